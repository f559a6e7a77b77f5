"""Issue 11's figure: edit -> verdict on `invoke watch`'s warm guest, against a bare boot of the same kernel
measured in the same run.

    python bench/edit_loop.py [--target arm-6.1] [--edits 10]

The loop watches a copy of templates/ (results and generated files in a temporary directory): each edit
changes kmap.c.j2 so that the module's bytes change (a MODULE_INFO string; a comment would leave the
stripped .ko identical and nothing to push). The time is from the edit's write to the verdict printed
by watch() (its 0.05 s poll included): render, Kbuild of that one module, strip, push through the
console, plan, fetch, verify. The last line is `edit->verdict median X s, bare boot Y s, ratio R`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_ratio import bare_boot
from kbuild.render import TEMPLATES_DIR
from kbuild.targets import default_target_name, load_target
from kit.request import RunRequest
from kit.watch import Iteration, WatchLoop


def phases(run: Iteration) -> str:
    return ", ".join(f"{p.name} {p.elapsed_s:.2f}" for p in run.outcome.phases)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default=default_target_name())
    parser.add_argument("--edits", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kit-bench-edit-") as tmp:
        work = Path(tmp)
        templates = work / "templates"
        shutil.copytree(TEMPLATES_DIR, templates)
        template = templates / "modules" / "kmap.c.j2"
        original = template.read_text()
        request = RunRequest(load_target(args.target), results_root=work / "results",
                             generated_root=work / "generated", templates_dir=templates)
        bare = []
        for _ in range(3):
            started = time.monotonic()
            bare_boot(request, work)
            bare.append(time.monotonic() - started)
        edited_at: list[float] = []
        times: list[float] = []
        runs: list[Iteration] = []

        def edit() -> None:
            edited_at.append(time.monotonic())
            template.write_text(original + f'MODULE_INFO(kit_edit, "{len(edited_at)}");\n')

        def report(run: Iteration) -> None:
            runs.append(run)
            assert run.outcome.verdict is not None and run.outcome.verdict.status == "pass", run.outcome.verdict
            if edited_at:
                times.append(time.monotonic() - edited_at[-1])
                print(f"edit {len(times)}: {times[-1]:.2f} s ({phases(run)})", flush=True)
            if len(edited_at) < args.edits:
                threading.Timer(0.3, edit).start()

        loop = WatchLoop(request, lambda _line: None)
        try:
            loop.watch(report, keep_going=lambda: len(times) < args.edits)
        finally:
            loop.close()
        assert not any(run.fresh_boot for run in runs[1:]), "the guest was booted again during the loop"
    median, bare_median = statistics.median(times), statistics.median(bare)
    print(f"edit->verdict median {median:.2f} s, bare boot {bare_median:.2f} s, ratio {median / bare_median:.2f}")


if __name__ == "__main__":
    main()
