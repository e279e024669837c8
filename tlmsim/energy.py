"""Energy and power of a finished run, computed from its result records alone.

Post-processing: reads result.json's phases (time, busy fractions, bytes moved, DMA
counts), its ``cost`` block (resources per component) and its resolved config (board,
clock); no live simulator state. Per phase and component:

* static: the board's idle power x phase time;
* logic: busy cycles x (LUTs x lut_pj + FFs x ff_pj) x toggle rate, and busy cycles x
  DSPs x dsp_pj (every DSP of a busy PE array does one multiply-accumulate per cycle);
* vector unit: busy cycles x lanes x one fp32 multiply-add;
* buffers: bits written and read x URAM/BRAM pJ/bit (weights and KV: each byte a DMA
  brings is written once and read once; activations: every busy PE-array cycle reads
  one beat of activations per token row);
* memories: bytes moved x the memory kind's pJ/bit; AXI: DMA bytes x axi pJ/bit;
* clock tree: every flip-flop of the design clocked every cycle of the phase.

Constants: tlmsim/models/presets/energy/<family>.yaml, each with its source.
"""

from __future__ import annotations

from tlmsim.models.board import EnergyConstants, energy_constants

PJ = 1e-12
LOGIC_COMPONENTS = ("pe_array", "decoder")
DMA_COMPONENTS = ("weight_dma", "kv_dma")
BUFFER_DMAS = {"weight_buffer": "weight_dma", "kv_buffer": "kv_dma"}


def energy_report(result: dict) -> dict | None:
    """Energy (J) per component, average power (W), J/token and tokens/J for each phase."""
    cfg, cost = result["config"], result.get("cost")
    if cost is None or cfg.get("board") is None:
        return None
    constants = energy_constants(cfg["board"]["family"])
    phases = {name: _phase_energy(result, name, phase, constants) for name, phase in result["phases"].items()
              if phase is not None}
    return {"constants": f"tlmsim/models/presets/energy/{cfg['board']['family']}.yaml", "phases": phases}


def phase_tokens(result: dict, name: str) -> int:
    """Tokens a phase produces (prefill: the prompt's; decode: one per step and sequence)."""
    wl = result["config"]["workload"]
    steps = result["phases"][name]["steps"]
    return wl["batch"] * (wl["prefill_tokens"] if name == "prefill" else steps)


def _phase_energy(result: dict, name: str, phase: dict, k: EnergyConstants) -> dict:
    cfg, cost = result["config"], result["cost"]
    seconds = phase["time_s"]
    cycles = seconds * cfg["accelerator"]["clock_mhz"] * 1e6
    joules = {"static": cfg["board"]["static_power_w"] * seconds}
    joules.update(_logic(cfg, cost, phase, cycles, k))
    joules.update(_buffers(cfg, cost, phase, cycles, k))
    joules.update(_memories(cfg, phase, k))
    joules["clock_tree"] = cost["total"]["ff"] * cycles * k.clock_pj_per_ff_cycle * PJ
    tokens = phase_tokens(result, name)
    total_j = sum(joules.values())
    return {"joules": joules, "total_j": total_j, "average_w": total_j / seconds,
            "dynamic_w": (total_j - joules["static"]) / seconds, "tokens": tokens,
            "j_per_token": total_j / tokens, "tokens_per_j": tokens / total_j}


def _busy(phase: dict, component: str) -> float:
    return phase["utilisation"].get(component, {}).get("busy", 0.0)


def _logic_j(line: dict, busy_cycles: float, k: EnergyConstants) -> float:
    toggles = (line["lut"] * k.lut_pj_per_toggle + line["ff"] * k.ff_pj_per_toggle) * k.toggle_rate
    return busy_cycles * (toggles + line["dsp"] * k.dsp_pj_per_op) * PJ


def _logic(cfg: dict, cost: dict, phase: dict, cycles: float, k: EnergyConstants) -> dict:
    parts = cost["components"]
    vector_lanes = cfg["accelerator"]["vector_unit"]["lanes"]
    out = {c: _logic_j(parts[c], _busy(phase, c) * cycles, k) for c in LOGIC_COMPONENTS}
    lanes_busy = _busy(phase, "vector_unit") * cycles
    out["vector_unit"] = lanes_busy * vector_lanes * k.vector_pj_per_lane_cycle * PJ
    dma_busy = max(_busy(phase, c) for c in DMA_COMPONENTS)
    dma_bits = 8 * sum(phase["counts"].get(c, {}).get("bytes", 0) for c in DMA_COMPONENTS)
    out["dmas"] = _logic_j(parts["dmas"], dma_busy * cycles, k) + dma_bits * k.axi_pj_per_bit * PJ
    for name in phase["bytes_by_memory"]:
        line = parts.get(f"{name}_controller")
        if line is not None:
            out[f"{name}_controller"] = _logic_j(line, _busy(phase, name) * cycles, k)
    return out


def _buffers(cfg: dict, cost: dict, phase: dict, cycles: float, k: EnergyConstants) -> dict:
    acc = cfg["accelerator"]
    per_bit = {"uram": k.uram_pj_per_bit, "bram": k.bram_pj_per_bit}
    out = {}
    for buffer, dma in BUFFER_DMAS.items():
        bits = 2 * 8 * phase["counts"].get(dma, {}).get("bytes", 0)  # written once, read once
        out[buffer] = bits * per_bit[acc[buffer]["memory"]] * PJ
    pe = acc["pe_array"]
    beat_bits = pe["rows"] * pe["lanes"] * pe["m"] * cfg["workload"]["activation_bits"]
    activation_bits = _busy(phase, "pe_array") * cycles * beat_bits
    out["activation_buffer"] = activation_bits * per_bit[acc["activation_buffer"]["memory"]] * PJ
    return out


def _memories(cfg: dict, phase: dict, k: EnergyConstants) -> dict:
    return {name: 8 * nbytes * k.memory_pj_per_bit(cfg["memory"][name]["kind"]) * PJ
            for name, nbytes in phase["bytes_by_memory"].items()}
