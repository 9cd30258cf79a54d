"""The ``optbench`` command line: list, run, report, export.

User errors print one line (``optbench: error: ...``) and exit 2 without a traceback;
a sweep in which some trial ended in ``error`` or ``timeout`` exits 1 after finishing the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_core import api
from bench_core.api import DEFAULT_REPORTS, DEFAULT_RESULTS, check_output_folder
from bench_core.context import RunContext
from bench_core.data import reading_data_from
from bench_core.errors import UserError
from bench_core.executors import EXECUTORS
from bench_core.interrupts import tracking_sigint

EXIT_TRIAL_ERRORS, EXIT_USER_ERROR, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optbench`` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for item in argv:  # argparse would hand '--flag=--' over as an empty list, not as a string
        if item.startswith("--") and item.endswith("=--"):
            print(f"optbench: error: {item}: '--' is not a value", file=sys.stderr)
            return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    try:
        with tracking_sigint():  # tells a plugin's sys.exit()/KeyboardInterrupt from the user's Ctrl-C
            return args.handler(args)
    except UserError as exc:
        print(f"optbench: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("optbench: interrupted; finished trials are stored, run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optbench", description="Benchmark gradient-descent optimizers across problems, learning rates, "
        "batch sizes, momentum, schedules and seeds.")
    parser.add_argument("--version", action="version", version=f"optbench {_version()}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--plugins", action="append", default=[], metavar="PATH",
                         help="load a local plugin file or every .py file of a folder (repeatable)")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", metavar="DIR",
                      help="folder holding local data sets such as MNIST or CIFAR-10 (default: $OPTBENCH_DATA_DIR), "
                      "searched before ./data and the system's /usr/share/datasets")
    results = argparse.ArgumentParser(add_help=False)
    results.add_argument("--results", default=DEFAULT_RESULTS, metavar="PATH",
                         help=f"SQLite results file (default: {DEFAULT_RESULTS})")

    execution = argparse.ArgumentParser(add_help=False)
    execution.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the suite's, else auto)")
    execution.add_argument("--workers", type=int, help="worker processes; 1 runs in-process (default: one per "
                     "CPU core, 1 on CUDA)")
    execution.add_argument("--threads", type=int, metavar="N",
                           help="torch threads per trial, whatever the executor (default: 1, so results do not "
                           "depend on --workers or --executor)")
    execution.add_argument("--executor", default="auto", choices=EXECUTORS,
                     help="where trials run: auto (in-process for 1 worker, else a process pool), inprocess, pool, "
                     "or dask (a Dask cluster; needs the 'dask' extra)")
    execution.add_argument("--scheduler", metavar="ADDRESS",
                     help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --executor dask; "
                     "default: start a local cluster of --workers processes)")
    execution.add_argument("--trial-timeout", metavar="SECONDS",
                           help="stop a trial still running after this many seconds and store it as 'timeout'; "
                           "'auto' (the default: 60 s + 2 s per step + 60 s per evaluation, to stop hangs) or "
                           "'none' (suite setting: trial_timeout)")
    execution.add_argument("--no-vectorize", action="store_true",
                           help="run every trial on its own, not in vectorised groups of trials that differ only in "
                           "float hyperparameters and seed (suite setting: vectorize = false)")
    execution.add_argument("--report-dir", default=DEFAULT_REPORTS, metavar="DIR",
                     help=f"where to write the report (default: {DEFAULT_REPORTS})")
    execution.add_argument("--no-report", action="store_true", help="do not write a report after the run")
    execution.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    execution.add_argument("--dry-run", action="store_true", help="print the trial count and exit")
    execution.add_argument("--rerun", action="store_true",
                     help="run every trial again, replacing stored results (default: skip stored trials)")

    listing = commands.add_parser("list", parents=[plugins, data], help="list optimizers, problems, schedules, plugins",
                                  description="List everything the installed and given plugins provide.")
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(handler=cmd_list)

    run = commands.add_parser(
        "run", parents=[plugins, results, data, execution], help="run a suite or a sweep built from flags",
        description="Run a built-in suite, a suite TOML file, or a sweep built from flags; trials already "
        "stored are skipped. Comma-separated values make a grid (--lr 0.01,0.1). Flags override the suite.")
    run.add_argument("suite", nargs="?", metavar="SUITE",
                     help="built-in suite name or TOML file (default: 'default', or a custom sweep when "
                     "--problem is given)")
    run.add_argument("--problem", help="problem name(s), comma-separated")
    run.add_argument("--optimizer", help="optimizer name(s), comma-separated (default: all for a custom sweep)")
    run.add_argument("--lr", help="learning rate(s): values, or a grid log:LOW:HIGH:NUM / lin:LOW:HIGH:NUM")
    run.add_argument("--momentum", help="momentum value(s), for optimizers that have momentum")
    run.add_argument("--hp", action="append", default=[], metavar="NAME=VALUES",
                     help="any other hyperparameter, e.g. --hp beta2=0.99,0.999 (repeatable)")
    run.add_argument("--batch-size", help="batch size(s)")
    run.add_argument("--schedule", help="learning-rate schedule name(s)")
    run.add_argument("--seeds", help="seed(s), e.g. 0,1,2")
    budget = run.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="budget in optimizer steps")
    budget.add_argument("--epochs", type=int, help="budget in epochs")
    budget.add_argument("--samples", type=int, help="budget in training samples (the same data for every batch size)")
    budget.add_argument("--seconds", type=int, help="budget in seconds of training time (ties results to the machine)")
    run.add_argument("--stop-at-target", action="store_true",
                     help="end each trial as soon as it is seen to meet the problem's target")
    run.add_argument("--search", metavar="NAME", help="search strategy: grid (default), random, tpe, or a plugin's "
                     "(see optbench list); random and tpe need --trials")
    run.add_argument("--trials", type=int, metavar="N", help="trial budget of the search, per optimizer and problem")
    run.add_argument("--lr-scaling", choices=["none", "linear"],
                     help="linear: the learning rates given are for --base-batch-size and scale with the batch size")
    run.add_argument("--base-batch-size", type=int, metavar="B",
                     help="batch size the learning rates are given for (default: the problem's default batch size)")
    run.add_argument("--transfer-batch-sizes", metavar="SIZES",
                     help="tune at --batch-size, then re-run the best setting at these batch sizes, e.g. 128,512")
    run.add_argument("--random-seed", type=int, metavar="SEED", help="seed of the random search draws (default 0)")
    run.add_argument("--evals", type=int, help="number of evaluations along each run (default 20)")
    run.add_argument("--name", help="suite name to store a custom sweep under (default: custom)")
    run.set_defaults(handler=cmd_run)

    lr_range = commands.add_parser(
        "lr-range", parents=[plugins, results, data, execution], help="Smith's learning-rate range test",
        description="Raise the learning rate exponentially over one short run per optimizer and problem, and "
        "report where the loss falls fastest (a good learning rate to start from) and where it blows up. "
        "Stored and resumed like any sweep; the report goes to REPORT_DIR/NAME/README.md.")
    lr_range.add_argument("--problem", required=True, help="problem name(s), comma-separated")
    lr_range.add_argument("--optimizer", help="optimizer name(s), comma-separated (default: all)")
    lr_range.add_argument("--min-lr", type=float, default=1e-6, help="learning rate of the first step (default 1e-6)")
    lr_range.add_argument("--max-lr", type=float, default=10.0, help="learning rate of the last step (default 10)")
    lr_range.add_argument("--steps", type=int, default=100, help="steps of the ramp (default 100)")
    lr_range.add_argument("--batch-size", help="batch size(s)")
    lr_range.add_argument("--seeds", help="seed(s), e.g. 0,1,2")
    lr_range.add_argument("--name", default="lr-range", help="suite name to store the test under (default: lr-range)")
    lr_range.set_defaults(handler=cmd_lr_range)

    check = commands.add_parser(
        "check-plugin", parents=[plugins, data], help="run the conformance kit on an optimizer, a problem or a plugin",
        description="Check an optimizer, a problem, or every optimizer and problem of a plugin against the "
        "conformance kit (bench_core.testing) and print a pass/fail table with the reason for each failure. "
        "Exits 1 if any check failed.")
    check.add_argument("name", metavar="NAME", help="an optimizer, problem or plugin name (see optbench list), or "
                       "the path of a plugin file (loaded as with --plugins)")
    check.add_argument("--skip-slow", action="store_true",
                       help="skip the slow check that trains a reference optimizer to each problem's target")
    check.add_argument("--device", default="cpu", help="device for the problem checks (default: cpu)")
    check.set_defaults(handler=cmd_check_plugin)

    report = commands.add_parser("report", parents=[plugins, results],
                                 help="write Markdown reports from stored results",
                                 description="Write reports/<suite>/README.md with figures, from stored "
                                 "results alone.")
    report.add_argument("--report-dir", default=DEFAULT_REPORTS, metavar="DIR",
                        help=f"where to write the reports, as for run (default: {DEFAULT_REPORTS})")
    report.add_argument("--suite", action="append", metavar="NAME",
                        help="suite(s) to report (default: every suite in the results file)")
    report.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="compare two results files (e.g. an optimizer before and after a change) into "
                        "REPORT_DIR/compare/README.md, flagging changes beyond seed noise")
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser(
        "export", parents=[results], help="export stored trials or learning curves to a CSV or Parquet file",
        description="Export the stored results to one file: one row per trial (flattened settings, results and "
        "metrics; --what trials), or one row per evaluation point of each trial's learning curve, with the "
        "trial's settings on every row (--what curves). Both formats hold the same columns and values; dicts "
        "are JSON text and integer columns stay integers. The file is written whole or not at all.")
    export.add_argument("--what", default="trials", choices=["trials", "curves"],
                        help="trials: one row per trial (default); curves: one row per evaluation point "
                        "(trial_id, settings, step, samples, seconds, lr, metrics)")
    export.add_argument("--format", choices=["csv", "parquet"],
                        help="csv, or parquet (needs the 'parquet' extra: pip install 'optbench[parquet]'); "
                        "default: parquet when FILE ends in .parquet or .pq, else csv")
    export.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="file to write, replaced only once complete; '-' for standard output (Parquet "
                        "only when that is a pipe or a file, not a terminal)")
    export.add_argument("--suite", help="only the trials of this suite")
    export.set_defaults(handler=cmd_export)
    return parser


def _version() -> str:
    import bench_core

    return bench_core.__version__


def _context(args: argparse.Namespace) -> RunContext:
    """The run context of a command: its plugins and data folder; plugin problems are warned about, one line each."""
    context = RunContext.create(args.plugins, data_dir=getattr(args, "data_dir", None))
    for issue in context.catalog.issues:
        print(f"optbench: warning: {issue}", file=sys.stderr)
    return context


def cmd_list(args: argparse.Namespace) -> int:
    from bench_core.listing import catalog_rows, render_listing

    context = _context(args)
    with reading_data_from(context.data_dir):  # the "Data sets" table says where this run would read them
        rows = catalog_rows(context.catalog)
    print(json.dumps(rows, indent=2) if args.json else render_listing(rows))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench_core.suite import adhoc_settings
    from bench_core.suite_files import read_suite

    context = _context(args)
    overrides = _overrides(args)
    if args.suite is None and args.problem is not None:
        settings, source = adhoc_settings(overrides["problems"]), "command line"
        settings["name"] = args.name or "custom"
    else:
        settings, source = read_suite(args.suite or "default")
        if args.name:
            settings["name"] = args.name
    return _run_settings(args, context, settings, source, overrides)


def cmd_lr_range(args: argparse.Namespace) -> int:
    from bench_core.lr_range import range_settings
    from bench_core.values import parse_cli_values

    if args.steps < 3:
        raise UserError(f"--steps {args.steps}: a range test needs at least 3 steps")
    context = _context(args)
    try:
        settings = range_settings(parse_cli_values("--problem", args.problem, str),
                                  parse_cli_values("--optimizer", args.optimizer, str) if args.optimizer else None,
                                  args.min_lr, args.max_lr, args.steps, args.name)
    except ValueError as exc:
        raise UserError(f"--min-lr {args.min_lr:g} --max-lr {args.max_lr:g}: {exc}") from None
    overrides: dict[str, Any] = {}
    for attr, kind in (("batch_size", int), ("seeds", int)):
        if getattr(args, attr) is not None:
            overrides[attr] = parse_cli_values(f"--{attr.replace('_', '-')}", getattr(args, attr), kind)
    if args.device is not None:
        overrides["device"] = args.device
    return _run_settings(args, context, settings, "command line", overrides)


def _run_settings(args: argparse.Namespace, context: RunContext, settings: dict[str, Any], source: str,
                  overrides: dict[str, Any]) -> int:
    """``run`` and ``lr-range`` from here on: a dry run counts, a run goes to :func:`bench_core.api.run`."""
    from bench_core.time_limits import parse_time_limit

    if args.trial_timeout is not None:
        try:
            overrides = overrides | {"trial_timeout": parse_time_limit(args.trial_timeout, "--trial-timeout")}
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.threads is not None:
        api.setting_integer("--threads", args.threads, 1, api.MAX_WORKERS)
    if args.no_vectorize:
        overrides = overrides | {"vectorize": False}
    if args.dry_run:
        from bench_core.executors import check_executor, default_workers

        check_executor(args.executor, args.scheduler)
        sweep = api.plan(settings, overrides=overrides, context=context, count_only=True, source=source)
        for notice in sweep.notices:
            print(f"optbench: {notice}", file=sys.stderr)
        if not sweep.planned:
            raise UserError(f"{source}: the sweep has no trials")
        workers = args.workers if args.workers is not None else default_workers(sweep.device, sweep.planned)
        api.setting_integer("--workers", workers, 1, api.MAX_WORKERS)
        print(f"suite {sweep.name!r}: {api.trial_count(sweep)} on {sweep.device}, {workers} worker(s)")
        return 0
    done = api.run(settings, overrides=overrides, source=source, results=args.results,
                   report_dir=None if args.no_report else args.report_dir, workers=args.workers,
                   executor=args.executor, scheduler=args.scheduler, threads=args.threads, rerun=args.rerun,
                   progress=False if args.no_progress else None, context=context, echo=True)
    return 0 if done.complete else EXIT_TRIAL_ERRORS


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from bench_core.values import parse_cli_hyperparameter, parse_cli_values

    overrides: dict[str, Any] = {}
    for attr, key, kind in (("problem", "problems", str), ("optimizer", "optimizers", str),
                            ("lr", "lr", float), ("momentum", "momentum", float),
                            ("batch_size", "batch_size", int), ("schedule", "schedule", str),
                            ("seeds", "seeds", int), ("transfer_batch_sizes", "transfer_batch_sizes", int)):
        value = getattr(args, attr)
        if value is not None:
            overrides[key] = parse_cli_values(f"--{attr.replace('_', '-')}", value, kind)
    for item in args.hp:
        name, sep, values = item.partition("=")
        if not sep or not name.isidentifier() or not values:
            raise UserError(f"--hp {item!r}: expected NAME=VALUE[,VALUE...]")
        overrides[name] = parse_cli_hyperparameter(f"--hp {name}", values)
    for key in ("steps", "epochs", "samples", "seconds", "evals", "trials", "base_batch_size"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = api.setting_integer(f"--{key.replace('_', '-')}", value, 1)
    if args.random_seed is not None:
        overrides["random_seed"] = api.setting_integer("--random-seed", args.random_seed, 0)
    if args.device is not None:
        overrides["device"] = args.device
    for key in ("search", "lr_scaling"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.stop_at_target:
        overrides["stop_at_target"] = True
    return overrides


def cmd_check_plugin(args: argparse.Namespace) -> int:
    from bench_core.testing import check_optimizer, check_problem, format_table

    given = Path(args.name).expanduser()
    if given.suffix == ".py" and given.is_file():  # a plugin file, as given (relative or not): load and check it
        args.name = str(given.resolve())
        if args.name not in {str(Path(p).expanduser().resolve()) for p in args.plugins}:
            args.plugins = [*args.plugins, args.name]
    context = _context(args)
    catalog = context.catalog
    targets = [(kind, name) for (kind, name), plugin in catalog.origin.items()
               if plugin == args.name and kind in ("optimizer", "problem")]
    targets += [(kind, args.name) for kind in ("optimizer", "problem") if args.name in catalog.entries(kind)]
    if not targets:
        known = sorted({*catalog.optimizers, *catalog.problems, *catalog.plugins})
        raise UserError(f"check-plugin: {args.name!r} is no optimizer, problem or plugin (known: {', '.join(known)})")
    failed = 0
    for kind, name in sorted(set(targets)):
        try:
            if kind == "optimizer":
                results = check_optimizer(catalog.optimizers[name])
            else:
                with reading_data_from(context.data_dir):
                    results = check_problem(catalog.problems[name], device=args.device,
                                            reach_target=not args.skip_slow)
        except ValueError as exc:  # the spec's exempt names a check the kit does not have
            raise UserError(f"check-plugin: {exc}") from None
        bad = sum(not r.passed for r in results)
        failed += bad
        verdict = "passes" if not bad else f"fails {bad} check(s)"
        print(f"{kind} {name} (plugin {catalog.origin[(kind, name)]}): {verdict}")
        print(format_table(results))
        print()
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.compare:
        path = api.compare_files(*args.compare, out=args.report_dir)
        print(f"optbench: comparison written to {path}", file=sys.stderr)
        return 0
    check_output_folder(Path(args.report_dir), "--report-dir")
    for path in api.write_reports(args.results, args.suite, args.report_dir, _context(args)):
        print(f"optbench: report written to {path}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench_core.export import STDOUT, export, format_for, require_pyarrow
    from bench_core.store import Store

    file_format = args.format or format_for(args.output)
    if file_format == "parquet":
        require_pyarrow()  # before the results file is opened: a missing extra is the first thing to hear
    if args.output != STDOUT:
        check_output_folder(Path(args.output).parent, "-o")
    with Store(args.results, create=False) as store:
        if args.suite and args.suite not in store.suites():
            raise UserError(f"{args.results}: no suite {args.suite!r} (stored: {', '.join(store.suites())})")
        export(store, args.output, format=file_format, suite=args.suite, what=args.what)
    where = "standard output" if args.output == STDOUT else args.output
    print(f"optbench: wrote the {args.what} as {file_format} to {where}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
