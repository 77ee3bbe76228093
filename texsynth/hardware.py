"""What this machine's processor can do, from the capability flags it reports, never from its model name.

``precision: auto`` runs VGG19's convolutions in bf16 on a CPU only where the
CPU multiplies bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``): there the
forward and backward pass at 256 px took 142 ms against 235 ms in fp32 (AMD
EPYC, 2 threads, 2026-12-01, as measured when the CPU engine issue was filed).
Without those instructions oneDNN emulates bf16 and is slower than fp32 (VGG19's
pass 1.7× slower, the README's first command 2.6×, on a 2-core Intel Xeon with
AVX-512 but no avx512_bf16, 2026-12-01), so fp32 stays. Only Linux reports the
flags in a form read here; elsewhere auto is fp32 on the CPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: Where Linux lists each processor's flags.
CPUINFO = Path("/proc/cpuinfo")
#: Instructions that multiply bf16 in hardware (AVX-512 BF16 dot products, AMX tiles).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags every processor listed in ``cpuinfo`` (the text of /proc/cpuinfo) has."""
    per_processor = [
        frozenset(line.partition(":")[2].split())
        for line in cpuinfo.splitlines()
        if line.partition(":")[0].strip() == "flags"
    ]
    return frozenset.intersection(*per_processor) if per_processor else frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU multiplies bf16 in hardware (False where it cannot tell)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return False
    return bool(cpu_flags(text) & NATIVE_BF16_FLAGS)
