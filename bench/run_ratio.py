"""Issue 2's benchmark, on one kernel in one run: a bare boot to power-off (the same initramfs without
test modules), the full default run, and an edit-one-template-then-run cycle, with their ratios to
the bare boot (goal: both <= 1.5).

    python bench/run_ratio.py [--target arm-6.1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.qemu import QemuTimeouts, QemuTransport
from kbuild.kernels import fetch_debian_kernel
from kbuild.render import TEMPLATES_DIR
from kbuild.targets import default_target_name, load_target
from kit.request import RunRequest
from kit.session import RunSession


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bare_boot(request: RunRequest, work: Path) -> None:
    tree = fetch_debian_kernel(request.target)
    assert tree.busybox is not None
    transport = QemuTransport(request.target.qemu, tree.image, tree.busybox, work / "bare",
                              timeouts=QemuTimeouts(boot_s=request.boot_timeout_s))
    transport.boot()
    transport.power_off()


def full_run(request: RunRequest) -> None:
    outcome = RunSession(request, lambda _line: None).run()
    assert outcome.verdict is not None and outcome.verdict.status == "pass", outcome.verdict


def edit_then_run(request: RunRequest, counter: list[int]) -> None:
    """A developer's cycle: change one template (a comment in kmap.c.j2), then run everything."""
    counter[0] += 1
    template = request.templates_dir / "modules" / "kmap.c.j2"
    template.write_text(template.read_text() + f"/* edit {counter[0]} */\n")
    full_run(request)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default=default_target_name())
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        templates = work / "templates"
        shutil.copytree(TEMPLATES_DIR, templates)
        request = RunRequest(load_target(args.target), results_root=work / "results",
                             generated_root=work / "generated", templates_dir=templates)
        full_run(request)  # warm: kernel cache, first build, initramfs base cache
        counter = [0]
        rows = {"bare boot": [], "full run": [], "edit + run": []}
        for _ in range(args.repeat):
            rows["bare boot"].append(timed(lambda: bare_boot(request, work)))
            rows["full run"].append(timed(lambda: full_run(request)))
            rows["edit + run"].append(timed(lambda: edit_then_run(request, counter)))
        bare = statistics.median(rows["bare boot"])
        print(f"target {args.target}, {args.repeat} rounds, median seconds (TCG, {shutil.which('qemu-system-arm')})")
        for name, values in rows.items():
            median = statistics.median(values)
            print(f"  {name:11} {median:6.2f} s   ratio {median / bare:4.2f}   runs {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
