"""The audit round trip on a real synthetic store: audit -> /audit/<run> -> CSV / Label Studio / HTML ->
reviewed corrections -> a new label set (the old one intact) -> labels compare."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from aucli.cli.main import cli
from aucli.store import CorpusStore


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory) -> Path:
    """3 subjects x 40 frames of the synthetic corpus with heavy label noise, plus stored out-of-fold predictions.

    The predictions come from a simulated judge: logits that follow the exact labels (synth_clean)
    with noise, so that the noisy label set ``synth`` has real mistakes the audit can find.
    """
    from click.testing import CliRunner

    from aucli.audit.sources import from_arrays, write_out_of_fold

    folder = tmp_path_factory.mktemp("audit")
    store = folder / "synth.h5"
    result = CliRunner().invoke(cli, ["synth", "--out", str(folder / "corpus"), "--subjects", "3", "--tasks", "1", "--frames", "40",
                                      "--size", "96", "--noise", "heavy", "--seed", "2", "--store", str(store), "--detector", "none",
                                      "--crop-size", "48"])
    assert result.exit_code == 0, result.output
    rng = np.random.default_rng(0)
    with CorpusStore.open(store, "a") as opened:
        clean = opened.read_labels("synth_clean")
        noisy = opened.read_labels("synth", au_names=clean.au_names)
        rows = noisy.labelled_rows()
        subjects = opened.face_subjects()[rows]
        logits = (2.0 * clean.occurrence[rows] - 1.0) * 2.5 + rng.normal(0, 1.0, (rows.size, len(clean.au_names)))
        oof = from_arrays(rows, logits, au_names=clean.au_names, labels=noisy.occurrence[rows],
                          groups=np.unique(subjects, return_inverse=True)[1] + 1, source={"kind": "simulated judge"})
        write_out_of_fold(opened, "judge", oof)
    return store


def labels_snapshot(store: Path, name: str):
    with CorpusStore.open(store) as opened:
        labels = opened.read_labels(name)
        return labels.occurrence.copy(), opened.label_attrs(name)


def test_audit_writes_a_run_and_never_edits_labels(runner, synth_store: Path, tmp_path: Path) -> None:
    from aucli.audit.run import read_audit

    before, attrs_before = labels_snapshot(synth_store, "synth")
    result = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--name", "first", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["run"] == "first" and summary["flags"] > 5 and summary["source"]["kind"] == "simulated judge"
    # AUs the judge cannot rank against these labels get no flag (here AU24: a rare AU whose few noisy positives are mostly wrong)
    assert all(summary["skill"][a] is None or summary["skill"][a] < 0.6 for a in summary["skipped"])
    # confusion evidence: the default pairs, less those with an AU the model cannot judge
    assert summary["confusion_pairs"] == [[a, b] for a, b in (("AU1", "AU2"), ("AU6", "AU7"), ("AU23", "AU24"))
                                          if a not in summary["skipped"] and b not in summary["skipped"]]
    assert sum(v is not None and v > 0.8 for v in summary["skill"].values()) >= 12
    after, attrs_after = labels_snapshot(synth_store, "synth")
    assert np.array_equal(before, after) and attrs_before == attrs_after
    with CorpusStore.open(synth_store) as opened:
        assert "first" in opened.runs("audit")
        record = read_audit(opened, "first")
        clean = opened.read_labels("synth_clean", au_names=record.au_names).occurrence
        noisy = opened.read_labels("synth", au_names=record.au_names).occurrence
        faces = opened.face_table(["frame", "source"])
    flags = record.flags
    assert len(flags) == summary["flags"] and np.all(np.diff(flags.score) <= 0) and flags.rank.tolist() == list(range(1, len(flags) + 1))
    assert record.thresholds.missed == pytest.approx(summary["thresholds"]["missed"])
    # flags hold consecutive frames of one source, all with the flag's label, and their rows are the store's
    for i in range(len(flags)):
        rows = flags.rows_of(i)
        k = record.au_names.index(flags.au[i])
        assert np.all(noisy[rows, k] == flags.label[i]) and np.all(faces["source"][rows] == flags.source[i])
        assert faces["frame"][rows].tolist() == list(range(flags.frame_start[i], flags.frame_stop[i] + 1))
    # the best flags are real mistakes of the noisy labels (the simulated judge sees the exact labels)
    wrong = [bool(np.any(clean[flags.rows_of(i), record.au_names.index(flags.au[i])] != flags.label[i])) for i in range(5)]
    assert sum(wrong) >= 4
    # the run name is refused when taken, before any work
    again = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--name", "first"])
    assert again.exit_code == 2 and "Error: audit run 'first' already exists" in again.output


def test_round_trip_csv_apply_and_compare(runner, synth_store: Path, tmp_path: Path) -> None:
    queue = tmp_path / "queue.csv"
    result = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--name", "csv",
                                 "--csv", str(queue), "--top", "6"])
    assert result.exit_code == 0, result.output
    assert "Audit thresholds" in result.output and "p*" in result.output
    with queue.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and rows[0]["rank"] == "1" and rows[0]["corrected"] == "" and rows[0]["label_set"] == "synth"
    # a reviewer accepts the first three flags, keeps the fourth, answers "unsure" on the fifth and skips the sixth
    rows[0]["corrected"], rows[1]["corrected"], rows[2]["corrected"] = (str(1 - int(r["label"])) for r in rows[:3])
    rows[3]["corrected"] = rows[3]["label"]
    rows[4]["corrected"] = "unsure"
    edited = tmp_path / "reviewed.csv"
    with edited.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before, _ = labels_snapshot(synth_store, "synth")
    applied = runner.invoke(cli, ["audit", "apply", str(edited), "--store", str(synth_store), "--as", "reviewed", "--json"])
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.output)
    assert report["base"] == "synth" and report["corrections"] == 4 and report["skipped"] == 2 and report["problems"] == []
    expected_changes = sum(int(r["n_frames"]) for r in rows[:3])
    per_au = report["per_au"]
    assert sum(v["added"] + v["removed"] for v in per_au.values()) == expected_changes
    assert sum(v["unchanged"] for v in per_au.values()) == int(rows[3]["n_frames"])
    with CorpusStore.open(synth_store) as opened:
        assert {"synth", "reviewed"} <= set(opened.label_sets())
        new = opened.read_labels("reviewed")
        assert opened.label_attrs("reviewed")["base"] == "synth"
    old, _ = labels_snapshot(synth_store, "synth")
    assert np.array_equal(old, before)
    assert int((new.occurrence != old).sum()) == expected_changes
    # the rich table names what changed; a taken name is refused
    shown = runner.invoke(cli, ["audit", "apply", str(edited), "--store", str(synth_store), "--as", "reviewed"])
    assert shown.exit_code == 1 and "Error: label set 'reviewed' already exists" in shown.output
    table = runner.invoke(cli, ["audit", "apply", str(edited), "--store", str(synth_store), "--as", "reviewed2"])
    assert table.exit_code == 0 and "added (0->1)" in table.output and "'synth' is unchanged" in table.output

    # labels compare: kappa and F1 of the reviewed set against the original, recomputed by hand
    compared = runner.invoke(cli, ["labels", "compare", str(synth_store), "synth", "reviewed", "--json"])
    assert compared.exit_code == 0, compared.output
    payload = json.loads(compared.output)
    k = payload["per_au"]["au"].index(rows[0]["au"])
    column = new.au_names.index(rows[0]["au"])
    a, b = old[:, column], new.occurrence[:, column]
    both = (a >= 0) & (b >= 0)
    a, b = a[both], b[both]
    observed = np.mean(a == b)
    chance = np.mean(a == 1) * np.mean(b == 1) + np.mean(a == 0) * np.mean(b == 0)
    assert payload["per_au"]["kappa"][k] == pytest.approx((observed - chance) / (1 - chance))
    tp, fp, fn = np.sum((a == 1) & (b == 1)), np.sum((a == 0) & (b == 1)), np.sum((a == 1) & (b == 0))
    assert payload["per_au"]["f1"][k] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    untouched = [i for i, au in enumerate(payload["per_au"]["au"]) if au not in {r["au"] for r in rows[:3]}]
    assert all(payload["per_au"]["kappa"][i] in (1.0, None) for i in untouched)
    table = runner.invoke(cli, ["labels", "compare", str(synth_store), "synth", "reviewed"])
    assert table.exit_code == 0 and "Agreement of reviewed with synth" in table.output
    missing = runner.invoke(cli, ["labels", "compare", str(synth_store), "synth", "nope"])
    assert missing.exit_code == 1 and "Error: no label set 'nope'" in missing.output


def test_label_studio_round_trip(runner, synth_store: Path, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "ls"
    result = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--name", "ls",
                                 "--label-studio", str(folder), "--top", "3"])
    assert result.exit_code == 0, result.output
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == 3
    config = (folder / "labeling_config.xml").read_text()
    assert '<Choices name="corrected" toName="image"' in config and '$image' in config
    for task in tasks:
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=images/flag_")
        image = Image.open(folder / url.split("?d=", 1)[1])
        assert image.size[0] > 2 * image.size[1]  # frames side by side
        assert task["predictions"][0]["result"][0]["value"]["choices"][0] == ("present" if task["data"]["kind"] == "missed" else "absent")
    # what Label Studio exports after review: annotations per task (the last one not cancelled counts)
    exported = []
    for n, task in enumerate(tasks):
        answer = "present" if task["data"]["label"] == 0 else "absent"
        annotations = [{"result": [{"from_name": "corrected", "to_name": "image", "type": "choices", "value": {"choices": ["unsure"]}}],
                        "was_cancelled": False}]
        if n < 2:
            annotations.append({"result": [{"from_name": "corrected", "to_name": "image", "type": "choices",
                                            "value": {"choices": [answer]}}], "was_cancelled": False})
        exported.append({"id": n + 1, "data": task["data"], "annotations": annotations})
    export_file = tmp_path / "project-1-at-2026.json"
    export_file.write_text(json.dumps(exported))
    applied = runner.invoke(cli, ["audit", "apply", str(export_file), "--store", str(synth_store), "--as", "ls_reviewed", "--json"])
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.output)
    assert report["corrections"] == 2 and report["skipped"] == 1
    changed = sum(task["data"]["n_frames"] for task in tasks[:2])
    assert sum(v["added"] + v["removed"] for v in report["per_au"].values()) == changed
    # JSON-MIN export: one flat object per task
    minimal = [{**task["data"], "corrected": "unknown"} for task in tasks[:1]]
    min_file = tmp_path / "min.json"
    min_file.write_text(json.dumps(minimal))
    applied = runner.invoke(cli, ["audit", "apply", str(min_file), "--store", str(synth_store), "--as", "ls_min", "--json"])
    assert applied.exit_code == 0, applied.output
    assert sum(v["uncoded"] for v in json.loads(applied.output)["per_au"].values()) == tasks[0]["data"]["n_frames"]


def test_corrections_with_problems(runner, synth_store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("source,frame_start,frame_stop,au,corrected,label_set\n"
                   "F001_T1.mp4,0,3,AU12,1,synth\n"
                   "nowhere.mp4,0,3,AU12,1,synth\n"
                   "F001_T1.mp4,0,3,AU99,0,synth\n"
                   "F001_T1.mp4,500,510,AU12,0,synth\n")
    result = runner.invoke(cli, ["audit", "apply", str(bad), "--store", str(synth_store), "--as", "partial", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["corrections"] == 1 and len(report["problems"]) == 3
    assert "no source 'nowhere.mp4'" in report["problems"][0] and "has no AU99" in report["problems"][1]
    assert "no face of track 0 on frames 500-510" in report["problems"][2]
    wrong_value = tmp_path / "wrong.csv"
    wrong_value.write_text("source,frame_start,frame_stop,au,corrected\nF001_T1.mp4,0,3,AU12,maybe\n")
    result = runner.invoke(cli, ["audit", "apply", str(wrong_value), "--store", str(synth_store), "--as", "x", "--base", "synth"])
    assert result.exit_code == 1
    assert "Error: wrong.csv line 2: corrected value 'maybe' is not one of 1/present, 0/absent, -1/unknown" in result.output
    no_base = tmp_path / "nobase.csv"
    no_base.write_text("source,frame_start,frame_stop,au,corrected\nF001_T1.mp4,0,3,AU12,1\n")
    result = runner.invoke(cli, ["audit", "apply", str(no_base), "--store", str(synth_store), "--as", "x"])
    assert result.exit_code == 2 and "Error: say which label set the corrections apply to with --base LABELSET" in result.output


def test_html_report_embeds_faces_and_curves(runner, synth_store: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--name", "html",
                                 "--no-temporal"])
    assert result.exit_code == 0, result.output
    exported = runner.invoke(cli, ["audit", "export", str(synth_store), "html", "--html", str(report), "--report-top", "2"])
    assert exported.exit_code == 0, exported.output
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>") and "src=\"http" not in text
    images = text.count("data:image/png;base64,")
    with CorpusStore.open(synth_store) as opened:
        from aucli.audit.run import read_audit

        record = read_audit(opened, "html")
    n_sheets = len(set(record.flags.au))
    assert images == 1 + n_sheets + 2 * 2  # histograms, a contact sheet per flagged AU, strip + timeline per top flag
    assert "Thresholds" in text and "Contact sheets" in text and "temporal evidence</b></td><td>off" in text
    nothing = runner.invoke(cli, ["audit", "export", str(synth_store), "html"])
    assert nothing.exit_code == 2 and "Error: say what to write" in nothing.output


def test_audit_option_errors(runner, synth_store: Path) -> None:
    both = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--checkpoint", "x.json"])
    assert both.exit_code == 2 and "Error: give one of --checkpoint and --predictions" in both.output
    mixed = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge", "--folds", "3"])
    assert mixed.exit_code == 2 and "Error: --folds configure fold training; they do not apply with --predictions" in mixed.output
    missing = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "nope"])
    assert missing.exit_code == 1 and "Error: no predictions run 'nope'" in missing.output
    threshold = runner.invoke(cli, ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge",
                                    "--missed-threshold", "AU12=2"])
    assert threshold.exit_code == 2 and "strictly between 0 and 1" in threshold.output
    help_text = runner.invoke(cli, ["audit", "--help"])
    assert help_text.exit_code == 0 and "apply" in help_text.output and "export" in help_text.output and "Examples:" in help_text.output


def test_an_au_the_model_cannot_judge_gets_no_flag(synth_store: Path) -> None:
    """A model that knows nothing gives every frame the base rate; for a rare AU that is below 1 - p*."""
    from aucli.audit.run import run_audit
    from aucli.audit.sources import from_arrays

    with CorpusStore.open(synth_store) as opened:
        labels = opened.read_labels("synth")
        rows = labels.labelled_rows()
        rates = labels.rates()
    calibrated = np.tile(np.nan_to_num(rates), (rows.size, 1))
    oof = from_arrays(rows, calibrated=calibrated, au_names=labels.au_names, source={"kind": "no skill"})
    guarded = run_audit(synth_store, oof, label_set="synth", write=False)
    assert len(guarded.flags) == 0
    rare = [a for a, r in zip(labels.au_names, rates) if 0 < r < 0.15]
    assert rare and all(guarded.skipped[a].startswith("held-out AUC 0.50 < 0.6") for a in rare)
    unguarded = run_audit(synth_store, oof, label_set="synth", write=False, min_auc=0.0)
    flagged = {str(a) for a in unguarded.flags.au}
    assert set(rare) <= flagged and set(unguarded.flags.kind) == {"spurious"}


def test_a_label_swap_is_flagged_on_both_aus_in_the_csv_queue(runner, synth_store: Path, tmp_path: Path) -> None:
    """AU1 coded as AU2 on the frames where AU1 alone is present; a judge that sees the exact labels."""
    from aucli.audit.export import QUEUE_COLUMNS, write_queue_csv
    from aucli.audit.flags import ScoringConfig
    from aucli.audit.rank import FlagTable
    from aucli.audit.run import run_audit
    from aucli.audit.sources import from_arrays

    with CorpusStore.open(synth_store, "a") as opened:
        clean = opened.read_labels("synth_clean")
        names = list(clean.au_names)
        a, b = names.index("AU1"), names.index("AU2")
        swapped = clean.occurrence.copy()
        moved = (swapped[:, a] == 1) & (swapped[:, b] == 0)
        swapped[moved, a], swapped[moved, b] = 0, 1
        opened.write_labels("swapped", names, swapped)
        rows = clean.labelled_rows()
    assert moved.sum() >= 5
    calibrated = np.where(clean.occurrence[rows] == 1, 0.97, 0.03)
    oof = from_arrays(rows, calibrated=calibrated, au_names=names, source={"kind": "exact judge"})
    record = run_audit(synth_store, oof, label_set="swapped", name="swap", write=False)
    assert record.confusion_pairs[0] == ["AU1", "AU2"]
    queue = tmp_path / "swap.csv"
    write_queue_csv(record, queue)
    with open(queue, newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert tuple(lines[0]) == QUEUE_COLUMNS and "confused_with" in QUEUE_COLUMNS
    assert {line["au"] for line in lines} == {"AU1", "AU2"}  # every other label agrees with the judge
    for line in lines:
        partner = "AU2" if line["au"] == "AU1" else "AU1"
        assert line["confused_with"] == partner and f"; confusion with {partner}: " in line["reason"]
        assert line["kind"] == ("missed" if line["au"] == "AU1" else "spurious")
    flagged = {(line["source"], line["au"], int(f)) for line in lines for f in range(int(line["frame_start"]), int(line["frame_stop"]) + 1)}
    assert len(flagged) == 2 * int(moved.sum())  # each moved frame is flagged on both AUs, no other frame
    assert record.counts()["AU1"]["confusion"] == record.counts()["AU1"]["missed"] > 0
    # without confusion evidence the same labels are flagged, as lone disagreements
    alone = run_audit(synth_store, oof, label_set="swapped", name="alone", write=False, scoring=ScoringConfig(confusion_pairs=[]))
    assert alone.confusion_pairs == [] and set(alone.flags.partner) == {""} and int(alone.flags.n_frames.sum()) == 2 * int(moved.sum())
    # audits stored before confusion evidence (no flag_partner array) read back with no partner
    arrays = {k: v for k, v in record.flags.to_arrays().items() if k != "flag_partner"}
    assert set(FlagTable.from_arrays(arrays).partner) == {""}
    # the printed summary names the pairs
    result = runner.invoke(cli, ["audit", str(synth_store), "--labels", "swapped", "--predictions", "judge", "--name", "printed",
                                 "--confusion-pairs", "AU1/AU2"])
    assert result.exit_code == 0, result.output
    assert "confusion pairs: AU1/AU2;" in " ".join(result.output.split())


def test_confusion_option_errors(runner, synth_store: Path) -> None:
    base = ["audit", str(synth_store), "--labels", "synth", "--predictions", "judge"]
    dash = runner.invoke(cli, [*base, "--confusion-pairs", "AU1-AU2"])
    assert dash.exit_code == 2 and "Error: a confusion pair is two AUs joined by '/' (AU1/AU2); found 'AU1-AU2'" in dash.output
    both = runner.invoke(cli, [*base, "--confusion-pairs", "AU1/AU2", "--no-confusion"])
    assert both.exit_code == 2 and "Error: give --confusion-pairs or --no-confusion, not both" in both.output
    absent = runner.invoke(cli, [*base, "--confusion-pairs", "AU1/AU5"])
    assert absent.exit_code == 2 and "Error: confusion pair AU1/AU5: AU5 not among the audited AUs (AU1, AU2," in absent.output
    off = runner.invoke(cli, [*base, "--no-confusion", "--name", "no-confusion", "--json"])
    assert off.exit_code == 0, off.output
    summary = json.loads(off.output)
    assert summary["confusion_pairs"] == [] and summary["scoring"]["confusion_pairs"] == []
    assert all(counts["confusion"] == 0 for counts in summary["counts"].values())
