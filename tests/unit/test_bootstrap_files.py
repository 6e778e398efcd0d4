"""Reading a bootstrap folder: one application per sub-folder, broken files reported, not used."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from infrastructure.bootstrap_files import BootstrapSet, FileProblem, read_bootstrap_dir


def job(name: str) -> dict[str, object]:
    return {
        "name": name,
        "pattern": "*/5 * * * *",
        "taskType": "HttpInvokerTask",
        "taskConfig": {"url": "http://crm-service/health", "method": "GET"},
    }


def write(root: Path, app: str, content: object) -> Path:
    folder = root / app
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jobs.json"
    path.write_bytes(content if isinstance(content, bytes) else orjson.dumps(content))
    return path


def test_each_sub_folder_with_a_jobs_file_is_an_application(tmp_path: Path) -> None:
    write(tmp_path, "crm", [job("crm-health-check"), job("crm-daily-sync")])
    write(tmp_path, "billing", [])

    found = read_bootstrap_dir(tmp_path)

    assert found.problems == []
    assert found.applications == {
        "billing": [],
        "crm": [job("crm-health-check"), job("crm-daily-sync")],
    }


def test_a_folder_without_a_jobs_file_is_not_an_application(tmp_path: Path) -> None:
    (tmp_path / "roles-only").mkdir()
    (tmp_path / "roles-only" / "roles.json").write_text("[]")
    (tmp_path / "stray.json").write_text("[]")

    found = read_bootstrap_dir(tmp_path)

    assert found.applications == {}
    assert found.problems == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ({"name": "crm-health-check"}, "must be a JSON array of job objects, not an object"),
        ([job("a"), "b"], "element 1: must be a job object, not a string"),
        ([job("a"), {"pattern": "* * * * *"}], "element 1: has no name"),
        ([job("a"), {**job("b"), "name": 7}], "element 1: has no name"),
        ([job("a"), job("b"), job("a")], "element 2: job name 'a' is listed twice"),
    ],
    ids=["truncated", "not-utf8", "not-an-array", "not-an-object", "no-name", "name-not-text",
         "duplicate"],
)  # fmt: skip
def test_a_broken_file_is_reported_with_its_path_and_reason(
    tmp_path: Path, content: object, reason: str
) -> None:
    path = write(tmp_path, "crm", content)

    found = read_bootstrap_dir(tmp_path)

    assert "crm" not in found.applications
    [problem] = found.problems
    assert (problem.application, problem.path) == ("crm", path)
    assert problem.reason.startswith(reason)
    assert str(problem).startswith(f"{path}: {reason}")


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "crm", [1, job("a"), job("a")])

    found = read_bootstrap_dir(tmp_path)

    assert [p.reason for p in found.problems] == [
        "element 0: must be a job object, not a number",
        "element 2: job name 'a' is listed twice",
    ]


def test_a_folder_name_that_is_no_application_id_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "my crm", [job("a")])

    found = read_bootstrap_dir(tmp_path)

    assert found.applications == {}
    [problem] = found.problems
    assert problem.path == path
    assert problem.reason.startswith("folder name 'my crm' is not a valid application id")


def test_a_broken_file_does_not_stop_the_other_applications(tmp_path: Path) -> None:
    broken = write(tmp_path, "billing", b"not json")
    write(tmp_path, "crm", [job("crm-health-check")])

    found = read_bootstrap_dir(tmp_path)

    assert found.applications == {"crm": [job("crm-health-check")]}
    assert [p.path for p in found.problems] == [broken]
    assert list(found.not_synced) == ["billing"]
    assert found.not_synced["billing"][0].startswith(f"{broken}: not valid JSON")


def test_not_synced_gathers_the_problems_per_application() -> None:
    found = BootstrapSet(
        problems=[
            FileProblem("crm", Path("/b/crm/jobs.json"), "element 0: has no name"),
            FileProblem("crm", Path("/b/crm/jobs.json"), "element 1: has no name"),
        ]
    )

    assert found.not_synced == {
        "crm": [
            "/b/crm/jobs.json: element 0: has no name",
            "/b/crm/jobs.json: element 1: has no name",
        ]
    }


def test_a_missing_root_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(FileNotFoundError) as caught:
        read_bootstrap_dir(missing)

    assert caught.value.filename == str(missing)
    assert str(missing) in str(caught.value)


def test_a_root_that_is_a_file_is_an_error_naming_it(tmp_path: Path) -> None:
    file = tmp_path / "jobs.json"
    file.write_text("[]")

    with pytest.raises(NotADirectoryError) as caught:
        read_bootstrap_dir(file)

    assert caught.value.filename == str(file)
