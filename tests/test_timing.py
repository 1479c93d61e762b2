"""featlab.timing on benchmark files laid out and formatted as Snakemake writes them."""

import datetime

import pytest

from featlab import timing

HEADER = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out"]
HEADER += ["mean_load", "cpu_time"]
EXTENDED = ["jobid", "rule_name", "wildcards", "params", "threads", "cpu_usage", "resources"]
EXTENDED += ["input_size_mb"]


def write_benchmark(study, job, seconds, cpu_time, rule=None):
    """A benchmark file of one job; the other columns hold values far from `seconds` and
    `cpu_time`, so reading a wrong column changes every sum."""
    hms = str(datetime.timedelta(seconds=round(seconds)))
    values = [f"{seconds:.2f}", hms, "900.00", "1800.00", "700.00", "750.00", "55.00", "66.00"]
    values += ["77.00", cpu_time]
    header = HEADER
    if rule is not None:
        header = HEADER + EXTENDED
        values = [*values, "3", rule, "{'layer': 'x'}", "{}", "1", "40", "{}", "{}"]
    path = study / "benchmarks" / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "\t".join(values) + "\n")


@pytest.fixture
def study(tmp_path):
    """Three rules, two of which share the mapping cell's path scheme."""
    cell = "mappings/cnn/layer1/rot90"
    study = tmp_path / "results" / "shapes"
    write_benchmark(study, f"{cell}/identity", 3.0, "2.50", "evaluate_baseline")
    write_benchmark(study, f"{cell}/spatial", 4.0, "3.00", "evaluate_baseline")
    write_benchmark(study, f"{cell}/mlp", 10.0, "8.00", "train_mapping")
    write_benchmark(study, f"{cell}/cnn", 12.5, "12.75", "train_mapping")  # CPU > wall: 2 threads
    write_benchmark(study, f"{cell}/transformer", 20.0, "NA", "train_mapping")  # not sampled
    write_benchmark(study, "features/cnn/original", 6.0, "1.00", "gather_features")
    return study


def test_rules_come_from_the_rule_name_column_and_sum_the_wall_seconds(study):
    table = timing.per_rule(timing.read_benchmarks(study))
    assert list(table.index) == ["train_mapping", "evaluate_baseline", "gather_features"]
    assert table["jobs"].tolist() == [3, 2, 1]
    assert table["wall_s"].tolist() == pytest.approx([42.5, 7.0, 6.0])
    assert table["median_s"].tolist() == pytest.approx([12.5, 3.5, 6.0])
    assert table["share"].tolist() == pytest.approx([42.5 / 55.5, 7.0 / 55.5, 6.0 / 55.5])
    # wall - CPU, at least 0, of the jobs with a CPU time: 2 + 0 (12.5 - 12.75), 0.5 + 1, 5
    assert table["waiting_s"].tolist() == pytest.approx([2.0, 1.5, 5.0])


def test_the_slowest_jobs_come_first_with_their_rule(study):
    slowest = timing.slowest(timing.read_benchmarks(study), 3)
    cell = "mappings/cnn/layer1/rot90"
    assert list(slowest.index) == [f"{cell}/transformer", f"{cell}/cnn", f"{cell}/mlp"]
    assert slowest["rule"].tolist() == ["train_mapping"] * 3
    assert slowest["s"].tolist() == pytest.approx([20.0, 12.5, 10.0])


def test_waiting_leaves_out_jobs_without_a_cpu_time_and_start_up_counts_every_job(study):
    waiting, startup = timing.outside_computation(timing.read_benchmarks(study), 1.5)
    # 0.5 + 1 + 2 + 0 + 5 of the 35.5 s of the five jobs with a CPU time
    assert waiting.startswith("waiting (wall - CPU): 8.5 s of the 35.5 job-seconds of the 5 of 6")
    assert startup == "start-up: 6 jobs x 1.5 s = 9.0 s of 55.5 job-seconds (16%)"


def test_without_rule_names_jobs_are_grouped_by_their_folder_scheme(tmp_path):
    study = tmp_path / "shapes"
    write_benchmark(study, "features/cnn/original/00000", 5.0, "4.00")
    write_benchmark(study, "features/vit/rot90/00001", 7.0, "4.00")
    write_benchmark(study, "features/cnn/original", 2.0, "1.00")
    write_benchmark(study, "images/original", 1.0, "1.00")
    table = timing.per_rule(timing.read_benchmarks(study))
    assert list(table.index) == ["[features/*/*/*]", "[features/*/*]", "[images/*]"]
    assert table["wall_s"].tolist() == pytest.approx([12.0, 2.0, 1.0])


def test_the_command_prints_every_section_and_refuses_a_study_without_benchmarks(
    study, tmp_path, capsys
):
    timing.main([str(study), "--top", "2", "--startup", "1"])
    printed = capsys.readouterr().out
    assert printed.startswith("6 jobs, 55.5 job-seconds")
    assert "the 2 slowest jobs:" in printed
    assert "start-up: 6 jobs x 1 s" in printed
    with pytest.raises(FileNotFoundError, match="no benchmark files"):
        timing.read_benchmarks(tmp_path / "empty")
