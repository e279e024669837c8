"""FPGA resources from synthesis: rtl/nm_pe.v through Yosys, cached, times the PE array.

``pe_array_resources(cfg, act_bits, ...)`` is the entry point; ``pe_resources(design)``
gives one PE. See docs/resources.md.
"""

from tlmsim.models.synthesis.array import ArrayResources, ResourceCount, array_of, pe_array_resources, pe_design_for
from tlmsim.models.synthesis.cache import pe_resources
from tlmsim.models.synthesis.yosys import PeDesign, PeResources, SynthesisError

__all__ = ["ArrayResources", "PeDesign", "PeResources", "ResourceCount", "SynthesisError", "array_of",
           "pe_array_resources", "pe_design_for", "pe_resources"]
