"""bioprune.allocator: freed forward temporaries stay in the heap, once an engine runs on the CPU."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from bioprune.allocator import user_tuned

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")

# attention-like work in bf16 over varying lengths (as per-sequence attention does), then the minor page
# faults of two more passes: fresh pages the kernel had to zero and map
WORKLOAD = """
import resource, torch
torch.set_num_threads(1)
q = torch.randn(12, 512, 32).bfloat16()
def work():
    for n in (96, 352, 160, 512, 224, 448) * 5:
        s = torch.matmul(q[:, :n], q[:, :n].transpose(1, 2))
        torch.matmul(s.softmax(-1), q[:, :n])
        torch.randn(n, 1536).bfloat16()
work()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
work(); work()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _python(code: str, **env: str) -> str:
    """The last word ``code`` prints in a fresh interpreter whose malloc settings are glibc's own and ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}, check=True)
    return ran.stdout.split()[-1]


def _page_faults(setup: str) -> int:
    return int(_python(textwrap.dedent(setup) + WORKLOAD))


def test_the_users_own_malloc_settings_are_recognised():
    assert not user_tuned({"PATH": "/bin"})
    assert user_tuned({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert user_tuned({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    assert not user_tuned({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})


@glibc_only
def test_an_engine_on_the_cpu_makes_freed_temporaries_reusable(tiny_model_dir):
    untuned = _page_faults("")
    tuned = _page_faults(f"""
        from bioprune import PruningEngine
        PruningEngine.from_pretrained({str(tiny_model_dir)!r})
    """)
    assert tuned < 100, f"{tuned} page faults in steady state with the engine loaded ({untuned} without)"
    if untuned < 1000:
        pytest.skip(f"this glibc faulted only {untuned} times without the thresholds: no difference to show")
    assert tuned < untuned / 10


@glibc_only
def test_the_users_own_malloc_settings_win():
    code = "from bioprune.allocator import keep_freed_memory; print(keep_freed_memory())"
    assert _python(code, MALLOC_TRIM_THRESHOLD_="131072") == "False"
    assert _python(code) == "True"


# a 2 MiB malloc, and whether glibc served it with a mapping of its own (mallinfo2's hblks)
MAPPED_2MIB = """
import ctypes
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
before = libc.mallinfo2().hblks
libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
"""


@glibc_only
def test_a_batch_runs_flat_memory_mode_survives_the_engine(tiny_model_dir):
    """`--memory flat` maps every tensor from 1 MiB up for the lowest peak; the engine created
    after it must not raise the threshold to its own 32 MiB (it did: flat lost its low peak)."""
    setup = f"""
from bioprune import PruningEngine
from bioprune.batch_run import limit_malloc_growth
limit_malloc_growth("flat")
PruningEngine.from_pretrained({str(tiny_model_dir)!r})
"""
    assert _python(setup + MAPPED_2MIB) == "1"
    assert _python(f"from bioprune import PruningEngine\nPruningEngine.from_pretrained({str(tiny_model_dir)!r})\n"
                   + MAPPED_2MIB) == "0"  # the engine alone: under its 32 MiB threshold, from the heap
