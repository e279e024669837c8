"""tlmsim: a transaction-level simulator of FPGA accelerators for compressed LLMs."""
