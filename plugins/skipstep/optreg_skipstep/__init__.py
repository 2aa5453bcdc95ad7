"""optreg-skipstep: skip an optimizer step when the loss or the gradient norm spikes, without a host sync."""

from optreg_skipstep.optim import NoUpdate, SkipStepOptimizer, grad_norm, stats_dtype
from optreg_skipstep.stats import SpikeDetector

__all__ = ["NoUpdate", "SkipStepOptimizer", "SpikeDetector", "grad_norm", "stats_dtype"]
__version__ = "0.1.0"
