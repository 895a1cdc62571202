"""Stage 1: validate the raw NSL-KDD files with a Great Expectations suite.

Writes HTML Data Docs under reports/data_docs/ and a summary in reports/validation.json; any
violated expectation fails the stage with the file, column and expectation named.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context import AbstractDataContext

from desy import schema
from pipelines import config
from pipelines.dataset import DATA_HELP, read_raw

log = logging.getLogger("desy.validate")

_COUNT_CAPS = {
    **{name: schema.WINDOW_COUNT_CAP for name in schema.WINDOW_COUNT_FEATURES},
    **{name: schema.HOST_COUNT_CAP for name in schema.HOST_COUNT_FEATURES},
}


@dataclass
class Failure:
    """One violated expectation."""

    file: str
    column: str | None
    expectation: str
    detail: str

    def __str__(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        return f"{self.file}: {where} failed {self.expectation}: {self.detail}"


@dataclass
class FileReport:
    """Outcome of validating one file."""

    file: str
    rows: int
    expectations: int
    failures: list[Failure] = field(default_factory=list)


def build_suite(name: str, expected_rows: int | None) -> gx.ExpectationSuite:
    """The NSL-KDD expectation suite; row count checked when expected_rows is given."""
    suite = gx.ExpectationSuite(name=name)
    suite.add_expectation(
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(schema.RAW_COLUMNS))
    )
    if expected_rows is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=expected_rows))
    for column, kind in schema.FEATURES:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
        if kind == "cat":
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInSet(
                    column=column, value_set=list(schema.CATEGORICAL[column])
                )
            )
        elif kind == "rate":
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=["float64", "int64"])
            )
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=1)
            )
        else:
            upper = 1 if kind == "bool" else _COUNT_CAPS.get(column)
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=["int64"])
            )
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=upper)
            )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(column=schema.LABEL, value_set=list(schema.LABELS))
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInTypeList(column=schema.DIFFICULTY, type_list=["int64"])
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column=schema.DIFFICULTY, min_value=0, max_value=21)
    )
    return suite


def make_context(docs_dir: Path) -> AbstractDataContext:
    """An ephemeral GX context whose Data Docs site is docs_dir."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    context.add_data_docs_site(
        site_name="desy",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def validate_frame(
    context: AbstractDataContext, name: str, frame: pd.DataFrame, expected_rows: int | None
) -> FileReport:
    """Run the suite over one raw frame through a checkpoint that updates the Data Docs."""
    key = name.replace("+", "_plus").replace(".", "_").replace("-", "_")
    batch = (
        context.data_sources.add_pandas(f"src_{key}")
        .add_dataframe_asset(key)
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(build_suite(f"nsl_kdd_{key}", expected_rows))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate_{key}", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"check_{key}",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs")],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    report = FileReport(file=name, rows=len(frame), expectations=0)
    for suite_result in result.run_results.values():
        for outcome in suite_result.results:
            report.expectations += 1
            if not outcome.success:
                report.failures.append(_failure(name, outcome))
    return report


def _failure(name: str, outcome) -> Failure:
    cfg = outcome.expectation_config
    column = cfg.kwargs.get("column")
    result = outcome.result or {}
    exception = (outcome.exception_info or {}).get("exception_message")
    if exception:
        detail = (
            f"column missing ({exception.splitlines()[0][:120]})" if column else exception[:200]
        )
    elif "unexpected_count" in result:
        sample = result.get("partial_unexpected_list", [])[:5]
        detail = f"{result['unexpected_count']} unexpected values, e.g. {sample}"
    elif cfg.type == "expect_table_columns_to_match_ordered_list":
        observed = result.get("observed_value", [])
        missing = [c for c in schema.RAW_COLUMNS if c not in observed]
        detail = f"missing columns {missing}, observed {len(observed)} columns"
        column = ", ".join(missing) or None
    else:
        detail = f"observed {result.get('observed_value')!r}"
    return Failure(file=name, column=column, expectation=cfg.type, detail=detail)


def validate_files(
    paths: list[Path], expected_rows: dict[str, int], docs_dir: Path
) -> list[FileReport]:
    """Validate each raw file; Data Docs are (re)built under docs_dir."""
    context = make_context(docs_dir)
    reports = []
    for path in paths:
        log.info("validating %s", path.name)
        reports.append(
            validate_frame(context, path.name, read_raw(path), expected_rows.get(path.name))
        )
    return reports


def main() -> None:
    config.setup_logging()
    params = config.load_params()
    paths = [config.data_dir(params) / name for name in params["data"]["rows"]]
    if not all(path.is_file() for path in paths):
        sys.exit(DATA_HELP.format(dir=config.data_dir(params)))
    reports = validate_files(paths, params["data"]["rows"], config.DATA_DOCS)
    config.VALIDATION_FILE.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        r.file: {
            "rows": r.rows,
            "expectations": r.expectations,
            "failures": [str(f) for f in r.failures],
        }
        for r in reports
    }
    config.VALIDATION_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    failures = [f for r in reports for f in r.failures]
    for failure in failures:
        log.error("%s", failure)
    log.info("Data Docs: %s", config.DATA_DOCS / "index.html")
    if failures:
        sys.exit(f"validation failed: {len(failures)} expectation(s) violated, see above")
    log.info(
        "all %d files passed %d expectations", len(reports), sum(r.expectations for r in reports)
    )


if __name__ == "__main__":
    main()
