import os

import torch

if not torch.cuda.is_available():
    # Triton reads the flag when it is first imported, and the kit plugin below loads every
    # installed optreg plugin (any of which may import torch._dynamo, hence triton): set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest_plugins = ["optreg.testing.plugin"]

# The suite uses tiny matrices: one thread avoids OpenMP spin-waits that make tiny ops
# 10-40x slower on a busy 2-core machine (measured: 384 ms vs 9 ms per MLP step).
torch.set_num_threads(1)
