"""The book's tables and verdicts from saved results (vit_facemap.reports)."""

import json
import re

import numpy as np
import pytest

from vit_facemap.errors import DataError
from vit_facemap.reports import (
    best_fps,
    classifier_findings,
    classifier_per_animal,
    classifier_table,
    macro_f1_interval,
    per_group_table,
    shared_misses,
    speed_table,
    tracker_curves,
    tracker_findings,
    tracker_rows,
    tracker_table,
)


def _row(set_name, model, mean, animals, videos):
    return {"set": set_name, "model": model, "mean_px": mean, "median_px": mean / 2,
            "pck": 0.5, "n_train": 10, "n_test": 4, "description": "not shown",
            "per_animal": {a: {"n_frames": n, "mean_px": m} for a, (n, m) in animals.items()},
            "per_video": {v: {"n_frames": n, "mean_px": m} for v, (n, m) in videos.items()}}


@pytest.fixture
def rows():
    # one set of one animal (broken down by video), one of two animals
    return [
        _row("g7c1", "mean_shape", 17.0, {"G7c1": (4, 17.0)}, {"v1": (3, 15.0), "v2": (1, 23.0)}),
        _row("g7c1", "hybrid", 9.0, {"G7c1": (4, 9.0)}, {"v1": (3, 8.0), "v2": (1, 12.0)}),
        _row("schroeder", "mean_shape", 99.0, {"FG001": (2, 150.0), "Io": (2, 48.0)},
             {"s1": (2, 150.0), "s2": (2, 48.0)}),
        # a model that lacks one animal (it never predicted it) leaves a gap, not a shift
        _row("schroeder", "hybrid", 5.0, {"Io": (2, 5.0)}, {"s2": (2, 5.0)}),
    ]


def test_tracker_table_keeps_known_columns_in_order(rows):
    t = tracker_table(rows)
    assert list(t.columns) == ["set", "model", "mean_px", "clean_mean_px", "median_px", "pck",
                               "n_train", "n_test", "held_out"]
    assert t["mean_px"].tolist() == [17.0, 9.0, 99.0, 5.0]
    short = tracker_table(rows, short_names=True)
    assert list(short.columns) == ["set", "model", "mean px", "clean px", "median px", "PCK",
                                   "train", "test", "held out"]


def test_tracker_table_shows_clean_errors_all_steps_and_what_was_held_out(rows):
    rows[1].update(clean_mean_px=7.5, steps=100, refine_steps={"eye": 40, "nose": 20},
                   train_s=60.0)  # written before total_steps: first + second stages
    rows[3].update(clean_mean_px=4.0, steps=100, total_steps=130, train_s=50.0)
    t = tracker_table(rows)
    # rows written before clean errors were recorded (and models without steps): blank
    assert np.isnan(t["clean_mean_px"][0]) and t["clean_mean_px"][1] == 7.5
    assert t["total_steps"][1] == 160 and t["total_steps"][3] == 130
    assert np.isnan(t["total_steps"][0])
    assert "steps" not in t.columns  # the first stage's alone is not shown
    assert t["held_out"].tolist() == ["1 animal, 2 videos"] * 2 + ["2 animals, 2 videos",
                                                                   "1 animal, 1 video"]


def test_tracker_table_leaves_a_column_null_in_every_row_blank(rows):
    # all null (no held-out label scored, no reference length for a PCK): a column of
    # objects, shown as 'None' where one missing number is blank
    for r in rows:
        r.update(mean_px=None, pck=None)
    t = tracker_table(rows)
    assert t["mean_px"].isna().all() and t["pck"].isna().all()
    assert "None" not in t.to_html(na_rep="-")
    assert t["n_train"].tolist() == [10] * 4  # counts stay whole numbers
    rows[0]["pck"] = "high"
    with pytest.raises(DataError, match="'pck' holds values that are not numbers"):
        tracker_table(rows)


def test_tracker_table_names_a_row_without_errors(rows):
    del rows[1]["mean_px"]
    with pytest.raises(DataError, match="row 1 .*hybrid.*'mean_px'"):
        tracker_table(rows)
    with pytest.raises(DataError, match="no rows"):
        tracker_table([])


def test_per_group_table_by_animal_or_by_video(rows):
    t = per_group_table(rows)
    assert list(t.columns) == ["mean_shape", "hybrid"]  # the rows' order, not alphabetical
    assert t.columns.name is None
    # g7c1 has one held-out animal: its videos are the groups
    assert t.loc[("g7c1", "v1", 3)].tolist() == [15.0, 8.0]
    assert t.loc[("g7c1", "v2", 1)].tolist() == [23.0, 12.0]
    assert t.loc[("schroeder", "Io", 2)].tolist() == [48.0, 5.0]
    # the set has two held-out animals: by animal for every model, a gap where one is missing
    fg = t.loc[("schroeder", "FG001", 2)]
    assert fg["mean_shape"] == 150.0 and np.isnan(fg["hybrid"])
    assert ("schroeder", "s2", 2) not in t.index


def test_per_group_table_names_a_broken_group(rows):
    del rows[0]["per_video"]["v1"]["n_frames"]
    with pytest.raises(DataError, match="mean_shape's errors for 'v1'.*'n_frames'"):
        per_group_table(rows)


def test_per_group_table_counts_the_frames_with_labels(rows):
    # 2 held-out frames of Io, one without any label: its errors come from 1
    for r in rows[2:]:
        r["per_animal"]["Io"]["n_labeled_frames"] = 1
    rows[0]["per_video"]["v1"]["n_labeled_frames"] = 2  # hybrid's row has no count for v1
    t = per_group_table(rows)
    assert t.loc[("schroeder", "Io", 1)].tolist() == [48.0, 5.0]
    assert ("schroeder", "Io", 2) not in t.index
    # a group with a row written before the count: all frames, one line for both models
    assert t.loc[("g7c1", "v1", 3)].tolist() == [15.0, 8.0]
    assert len(t) == 4


@pytest.mark.parametrize("edit, message", [
    ({"per_animal": None}, r"row 1 \(hybrid\): 'per_animal' is not an object"),
    ({"per_video": {"v1": 8.0}}, r"row 1 \(hybrid\): 'per_video' is not an object"),
    ({"pck": "high"}, r"row 1 \(hybrid\): 'pck' is 'high', not a number"),
    ({"train_s": True}, r"row 1 \(hybrid\): 'train_s' is True, not a number"),
])
def test_tracker_rows_name_the_file_of_a_hand_edited_value(tmp_path, rows, edit, message):
    # the tables get rows, not the file: per_animal null was a TypeError there, and a
    # column of text a message without the file's name
    path = tmp_path / "tracker.json"
    rows[1].update(edit)
    path.write_text(json.dumps({"rows": rows, "complete": True}))
    with pytest.raises(DataError, match=f"tracker.json: {message}"):
        tracker_rows(path)


def test_tracker_rows_reads_finished_tables_only(tmp_path, rows):
    path = tmp_path / "tracker.json"
    with pytest.raises(DataError, match="no tracker table"):
        tracker_rows(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        tracker_rows(path)
    path.write_text(json.dumps({"rows": rows, "complete": False}))
    with pytest.raises(DataError, match="stopped part-way"):
        tracker_rows(path)
    path.write_text(json.dumps({"results": []}))
    with pytest.raises(DataError, match="no 'rows' list"):
        tracker_rows(path)
    path.write_text(json.dumps({"rows": rows, "complete": True}))
    assert tracker_rows(path) == rows


@pytest.mark.parametrize("row", [None, 3, "set model mean_px", {"loss": 0.1}])
def test_tracker_rows_refuse_rows_of_another_file(tmp_path, row):
    # an AttributeError in the tables, or a message that did not name the file
    path = tmp_path / "tracker.json"
    path.write_text(json.dumps({"rows": [row], "complete": True}))
    with pytest.raises(DataError, match=r"tracker.json: row 0 is not a result of benchmarks/"):
        tracker_rows(path)


def _summary(vit_f1=0.9, hog_f1=0.6, vit_auc=0.40, with_maps=True):
    def entry(f1, auc):
        return {"accuracy": f1, "balanced_accuracy": f1, "macro_f1": f1, "wall_s": 12.0,
                "attention_mass_in_region": 0.6 if with_maps else None,
                "region_share_chance": 0.5 if with_maps else None,
                "images_with_region_in_view": 10 if with_maps else 0,
                "deletion_auc": auc if with_maps else None,
                "deletion_auc_random": 0.5 if with_maps else None}
    return {"vit": entry(vit_f1, vit_auc), "hog-rf": entry(hog_f1, 0.495),
            "locator": {"share_within_half_eye_width": 0.8, "share_within_one_eye_width": 0.93,
                        "median_centre_error_eye_widths": 0.21}}


def _per_animal(summary, vit, hog):
    """Per-animal results as the study writes them: {animal: confusion matrix}."""
    from sklearn.metrics import balanced_accuracy_score

    from vit_facemap.bootstrap import macro_f1_of_confusion

    for name, per in (("vit", vit), ("hog-rf", hog)):
        groups = {}
        for g, cm in per.items():
            cm = np.array(cm)
            t = np.repeat([0, 0, 1, 1], cm.ravel())
            p = np.repeat([0, 1, 0, 1], cm.ravel())
            ba = balanced_accuracy_score(t, p) if len(set(t)) > 1 else float((t == p).mean())
            groups[g] = {"n": int(cm.sum()), "accuracy": float((t == p).mean()),
                         "balanced_accuracy": float(ba), "macro_f1": 0.0,
                         "confusion": cm.tolist()}
        summary[name]["per_group"] = groups
        # pooled as the study pools them: over the summed confusion matrix
        summary[name]["macro_f1"] = float(macro_f1_of_confusion(np.sum(list(per.values()), 0)))
    summary["classes"] = ["constricted", "dilated"]
    return summary


# four animals; the ViT right on nearly every frame, the forest on about half
VIT = {"A": [[10, 0], [0, 10]], "B": [[5, 1], [0, 0]], "C": [[0, 0], [1, 20]], "D": [[3, 0], [0, 1]]}
HOG = {"A": [[5, 5], [5, 5]], "B": [[3, 3], [0, 0]], "C": [[0, 0], [10, 11]], "D": [[1, 2], [1, 0]]}


def test_classifier_table():
    t = classifier_table(_summary())
    assert t.index.tolist() == ["HOG + random forest", "ViT (from scratch)"]
    assert t.loc["ViT (from scratch)", "macro-F1"] == 0.9
    assert np.isnan(t.loc["ViT (from scratch)", "balanced accuracy, mean over animals"])
    t = classifier_table(_per_animal(_summary(), VIT, HOG))
    # every animal weighs alike: (1 + 5/6 + 20/21 + 1) / 4
    assert np.isclose(t.loc["ViT (from scratch)", "balanced accuracy, mean over animals"],
                      (1 + 5 / 6 + 20 / 21 + 1) / 4)
    assert t["animals"].tolist() == [4, 4]


def test_classifier_per_animal_table():
    t = classifier_per_animal(_per_animal(_summary(), VIT, HOG))
    assert t.index.tolist() == ["A", "B", "C", "D"] and t.index.name == "animal"
    assert list(t.columns) == ["frames", "constricted", "dilated", "HOG + random forest",
                               "ViT (from scratch)"]
    assert t.loc["C"].tolist()[:3] == [21, 0, 21]
    assert np.isclose(t.loc["B", "ViT (from scratch)"], 5 / 6)  # one state: share correct
    with pytest.raises(DataError, match="no per-animal scores"):
        classifier_per_animal(_summary())


def test_classifier_verdict_needs_an_interval_that_excludes_zero(monkeypatch):
    # the verdict's logic on four animals; the minimum of groups has its own test
    monkeypatch.setattr("vit_facemap.bootstrap.MIN_GROUPS", 3)
    text = "\n".join(classifier_findings(_per_animal(_summary(), VIT, HOG), "x"))
    assert re.search(r"ViT 0.958, HOG \+ RF 0.480; the ViT is ahead by 0.478 \(95% interval "
                     r"\[\+0.\d{3}, \+0.\d{3}\], bootstrap over 4 held-out animals\)", text)
    assert "bootstrap over 4 held-out animals)" in text
    assert "mean over animals of the per-animal balanced accuracy is ViT 0.946" in text
    assert "(4 to 21 per animal)" in text
    even = {g: [[2, 0], [0, 2]] for g in "AB"}
    assert "(4 each)" in "\n".join(classifier_findings(_per_animal(_summary(), even, even), "x"))
    # the ViT better on two animals, worse on two: no verdict
    mixed = {"A": VIT["A"], "B": HOG["B"], "C": VIT["C"], "D": HOG["D"]}
    text = "\n".join(classifier_findings(_per_animal(_summary(), mixed, {
        "A": HOG["A"], "B": VIT["B"], "C": HOG["C"], "D": VIT["D"]}), "x"))
    assert "not distinguishable on these animals" in text and "is ahead by" not in text
    with pytest.raises(DataError, match="'vit'"):
        classifier_table({"hog-rf": _summary()["hog-rf"]})


def test_classifier_findings_follow_the_numbers():
    text = "\n".join(classifier_findings(_summary(), "test frames"))
    # a summary without per-animal confusion matrices: no interval, so no verdict
    assert ("ViT 0.900, HOG + RF 0.600; difference +0.300, interval not available (the summary "
            "has no per-animal results): no verdict" in text)
    assert "is ahead by" not in text and "at or above 0.85" in text
    assert "0.60 of the map inside the eye region vs 0.50 by chance (1.2x)" in text
    # ViT: 0.40 vs 0.50 ranks; HOG + RF: 0.495 vs 0.5 is within the margin
    assert "ViT: deletion AUC 0.400 with the map's order vs 0.500 in random order: the map ranks" in text
    assert "HOG + RF: deletion AUC 0.495 with the map's order vs 0.500 in random order: the map is no better" in text
    assert "within half an eye width of the labeled eye on 80%" in text

    text = "\n".join(classifier_findings(_summary(vit_f1=0.55), "test frames"))
    assert "difference -0.050" in text and "below 0.85" in text
    text = "\n".join(classifier_findings(_summary(vit_f1=0.85), "x", target=0.85))
    assert "at or above 0.85" in text  # the goal is inclusive
    text = "\n".join(classifier_findings(_summary(with_maps=False), "x"))
    assert "no deletion curves" in text and "of the map inside" not in text


def test_best_fps_takes_the_fastest_run(monkeypatch):
    from types import SimpleNamespace

    import vit_facemap.reports as reports_module

    now = [100.0]  # a fake clock that only the work moves: 0.5 s, 0.2 s, then 0.4 s
    durations = iter([0.5, 0.2, 0.4])

    def work():
        now[0] += next(durations)

    monkeypatch.setattr(reports_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    assert best_fps(work, 10, repeats=3) == pytest.approx(10 / 0.2)  # the fastest of the three
    with pytest.raises(StopIteration):  # every repeat ran
        work()
    with pytest.raises(ValueError, match="n_frames > 0"):
        best_fps(work, 0)


def test_speed_table_adds_the_benchmark(tmp_path):
    t = speed_table(300.0, 40.0, 30.0, (0.9, 1.0, 1.15))
    assert t["stage"].tolist() == ["decode only", "model only", "end to end"]
    assert t["box_sizes"].tolist() == ["-", "0.9, 1, 1.15", "0.9, 1, 1.15"]
    bench = tmp_path / "track_speed.json"
    assert len(speed_table(300.0, 40.0, 30.0, (1.0,), bench)) == 3  # absent: left out
    bench.write_text(json.dumps({"decode_fps": 250.0, "results": [
        {"model": "vit", "model_fps": 20.0, "end_to_end_fps": 15.0},  # written before scales
        {"model": "cnn", "model_fps": 25.0, "end_to_end_fps": 18.0, "scales": [1.0, 1.2]},
        {"model": "run", "model_fps": 9.0, "end_to_end_fps": 8.0, "scales": [1.0], "flip": True}]}))
    t = speed_table(300.0, 40.0, 30.0, (1.0,), bench, flip=True)
    assert len(t) == 10
    # a mirrored view costs a pass of the model as a box size does: said beside the sizes
    assert t["box_sizes"].tolist()[1:3] == ["1 + mirrored"] * 2
    assert t[t["model"] == "run"]["box_sizes"].tolist() == ["1 + mirrored"] * 2
    t = t[t["model"] != "run"]
    # a file written without its device (by hand): "-", not this page's
    assert t["device"].tolist() == ["cpu"] * 4 + ["-"] * 4
    assert t[t["model"] == "vit"]["box_sizes"].tolist() == ["1", "1"]
    assert t[t["model"] == "cnn"]["frames_per_s"].tolist() == [25.0, 18.0]
    bench.write_text(json.dumps({"results": []}))
    with pytest.raises(DataError, match="track_speed.json lacks 'decode_fps'"):
        speed_table(300.0, 40.0, 30.0, (1.0,), bench)


def test_speed_table_shows_the_device_of_each_row(tmp_path):
    # the benchmark may have timed its models on a GPU, this page on the CPU
    t = speed_table(300.0, 40.0, 30.0, (1.0,), device="cuda")
    assert t["device"].tolist() == ["cpu", "cuda", "cuda"]
    bench = tmp_path / "track_speed.json"
    result = {"model": "vit", "model_fps": 900.0, "end_to_end_fps": 240.0}
    for device, shown in (({"device": "cuda", "gpu": "NVIDIA H200"}, "NVIDIA H200"),
                          ({"device": "cpu", "cpu_count": 2}, "cpu")):
        bench.write_text(json.dumps({"decode_fps": 250.0, "device": device,
                                     "results": [result]}))
        t = speed_table(300.0, 40.0, 30.0, (1.0,), bench)
        assert t["device"].tolist() == ["cpu"] * 4 + [shown] * 2


def test_the_page_names_its_gpu_as_the_benchmark_does(monkeypatch):
    # the tracking page passed "cuda" where the benchmark's rows beside it name the GPU
    import torch

    from vit_facemap.runinfo import device_name

    assert device_name("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    assert device_name("cuda") == "NVIDIA H200"
    assert device_name("cpu") == "cpu"


def test_provenance_names_the_processor_and_torch_s_kernels(tmp_path, monkeypatch):
    """Seeded CPU runs repeat on one machine and can differ on another: the record names the
    processor model (not just "x86_64") and the vector instructions torch's kernels use."""
    import platform

    import torch

    from vit_facemap.runinfo import cpu_model, device_info

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
                    "flags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(info) == "AMD EPYC 7B13"
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu_model(tmp_path / "none") == "arm"  # no such file (macOS, Windows)
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # an ARM board names no model
    assert cpu_model(info) == "arm"
    record = device_info("cpu")
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu_model"] == cpu_model() and record["cpu_model"]


def test_speed_table_names_a_file_of_another_kind(tmp_path):
    bench = tmp_path / "track_speed.json"
    # TypeErrors and AttributeErrors that did not name the file
    for other in (None, 3, {"decode_fps": 9.0, "results": None},
                  {"decode_fps": 9.0, "results": {"generate_s": 0.1}},
                  {"decode_fps": 9.0, "results": [None]}):
        bench.write_text(json.dumps(other))
        with pytest.raises(DataError, match="track_speed.json.*not a result of benchmarks/"):
            speed_table(300.0, 40.0, 30.0, (1.0,), bench)
    bench.write_text(json.dumps({"decode_fps": 9.0, "results": [
        {"model": "vit", "model_fps": 20.0, "end_to_end_fps": 15.0, "scales": None}]}))
    assert speed_table(300.0, 40.0, 30.0, (1.0,), bench)["box_sizes"].tolist()[4:] == ["1", "1"]


def test_speed_table_tells_compiled_models_apart(tmp_path):
    # track_speed.py --compile: the same model eager and compiled, two rows of one name
    bench = tmp_path / "track_speed.json"
    bench.write_text(json.dumps({"decode_fps": 9.0, "results": [
        {"model": "vit", "model_fps": 20.0, "end_to_end_fps": 15.0, "compiled": False},
        {"model": "vit", "model_fps": 26.0, "end_to_end_fps": 17.0, "compiled": True}]}))
    t = speed_table(300.0, 40.0, 30.0, (1.0,), bench)
    assert t["model"].tolist()[4:] == ["vit", "vit", "vit (compiled)", "vit (compiled)"]


def test_tracker_findings_say_where_the_default_falls_short(rows):
    for r, per in zip(rows, ({"eye": 4.0, "nose": 20.0}, {"eye": 4.5, "nose": 6.0},
                             {"eye": 90.0, "nose": 100.0}, {"eye": 3.0, "nose": 7.0}),
                      strict=True):
        r["per_keypoint_mean_px"] = per
    rows.append(_row("schroeder", "cnn", 4.0, {"Io": (2, 4.0)}, {"s2": (2, 4.0)}))
    f = tracker_findings(rows)
    assert f.index.tolist() == ["g7c1", "schroeder"]
    g = f.loc["g7c1"]
    assert (g["next best"], g["its mean px"], g["margin px"]) == ("mean_shape", 17.0, 8.0)
    # a table written without per-frame errors: the margin, but no verdict on it
    assert g["default leads"] == "no interval"
    assert g["verdict"] == ("leads by 8.00 px; interval not available (the table was written "
                            "without per-frame errors)")
    assert g["keypoints not beating mean_shape"] == "eye (4.50 vs 4.00)"
    s = f.loc["schroeder"]
    assert (s["next best"], s["margin px"], s["default leads"]) == ("cnn", -1.0, "no interval")
    assert s["verdict"].startswith("trails by 1.00 px; interval not available")
    assert s["keypoints not beating mean_shape"] == "none"
    with pytest.raises(DataError, match="no set .*'fmnet'"):
        tracker_findings(rows, default="fmnet")


def test_splits_of_one_set_are_kept_apart(rows):
    # benchmarks/tracker.py --both-directions: one set, two splits, the same models in each
    two = []
    for split, shift in (("train v1", 0.0), ("train v2", 10.0)):
        for r in rows[:2]:
            r = {**r, "split": split, "mean_px": r["mean_px"] + shift,
                 "per_keypoint_mean_px": {"eye": 4.0 + shift, "nose": None}}
            two.append(r)
    two[3]["mean_px"] = 30.0  # hybrid behind the mean shape on the second split only
    f = tracker_findings(two)
    assert f.index.tolist() == ["g7c1 (train v1)", "g7c1 (train v2)"]
    assert [v.split(";")[0] for v in f["verdict"]] == ["leads by 8.00 px", "trails by 3.00 px"]
    # a keypoint with no held-out labels (None) is not compared; equal errors count as a miss
    assert f["keypoints not beating mean_shape"].tolist() == ["eye (4.00 vs 4.00)",
                                                            "eye (14.00 vs 14.00)"]
    assert tracker_table(two)["set"].tolist() == ["g7c1 (train v1)"] * 2 + ["g7c1 (train v2)"] * 2
    t = per_group_table(two)
    assert t.index.get_level_values("set").unique().tolist() == ["g7c1 (train v1)",
                                                                 "g7c1 (train v2)"]
    with pytest.raises(DataError, match="'hybrid' twice"):
        per_group_table([rows[1], rows[1]])


def test_per_group_table_keeps_groups_without_an_error(rows):
    rows[0]["per_video"]["v2"]["mean_px"] = None
    rows[1]["per_video"]["v2"]["mean_px"] = None  # no labels a model could be scored on
    t = per_group_table(rows)
    assert np.isnan(t.loc[("g7c1", "v2", 1)]).all()


def _log(folder, steps=3):
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("step,train_loss,val_mean_px\n" + "".join(
        f"{i},{1.0 / (i + 1)},{'' if i % 2 else 5.0 - i}\n" for i in range(steps)))


def test_tracker_curves_draw_the_tables_models_only(tmp_path):
    """A run folder left by an earlier benchmark (fmnet, trained when Facemap was installed)
    is not in the table and must not be drawn beside it."""
    rows = [{"set": "g7c1", "model": m} for m in ("mean_shape", "hybrid", "cnn")]
    runs = tmp_path / "runs"
    _log(runs / "g7c1" / "hybrid")
    _log(runs / "g7c1" / "hybrid" / "refine" / "eye")
    _log(runs / "g7c1" / "cnn")
    _log(runs / "g7c1" / "fmnet")  # stale
    curves = tracker_curves(rows, runs)
    assert list(curves) == ["g7c1"]
    assert [(label, stage) for label, stage, _ in curves["g7c1"]] == [
        ("hybrid", False), ("hybrid eye stage", True), ("cnn", False)]
    assert list(curves["g7c1"][0][2]["step"]) == [0, 1, 2]

    from vit_facemap.plotting import plot_tracker_curves

    fig = plot_tracker_curves(curves)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["hybrid", "hybrid eye stage (on its crops)", "cnn"]


def test_tracker_curves_name_a_set_without_logs(tmp_path):
    rows = [{"set": "g7c1", "model": "hybrid"}]
    _log(tmp_path / "g7c1" / "fmnet")
    with pytest.raises(DataError, match="no training log.*'hybrid'"):
        tracker_curves(rows, tmp_path)
    (tmp_path / "g7c1" / "hybrid").mkdir()
    (tmp_path / "g7c1" / "hybrid" / "metrics.csv").write_text("epoch,loss\n0,1\n")
    with pytest.raises(DataError, match="lacks 'step', 'train_loss'"):
        tracker_curves(rows, tmp_path)


def test_tracker_curves_follow_each_rows_run_folder(tmp_path):
    """--g7c1-split later keeps its runs in runs/g7c1-later; two splits of a set stay apart."""
    rows = [{"set": "g7c1", "split": s, "model": "hybrid", "run": f"{key}/hybrid"}
            for s, key in (("train v1", "g7c1"), ("train v2", "g7c1-reverse"))]
    _log(tmp_path / "g7c1" / "hybrid", steps=2)
    _log(tmp_path / "g7c1-reverse" / "hybrid", steps=4)
    curves = tracker_curves(rows, tmp_path)
    assert {k: len(v[0][2]) for k, v in curves.items()} == {"g7c1 (train v1)": 2,
                                                            "g7c1 (train v2)": 4}
    one = tracker_curves([{**rows[1], "split": "later"}], tmp_path)
    assert len(one["g7c1"][0][2]) == 4  # not runs/g7c1, another split's (or stale) run


def _with_errors(row, errors, animals):
    """A row as benchmarks/tracker.py writes it: every held-out keypoint's error."""
    n = len(errors)
    frames = [f"labeled-data/{a}_s/img{i}.png" for i, a in enumerate(animals)]
    errors = [[None if np.isnan(e) else float(e) for e in f] for f in errors]
    return {**row, "mean_px": float(np.nanmean(np.array(errors, float))), "n_test": n,
            "per_keypoint_mean_px": {"eye": 1.0},
            "per_frame": {"frames": frames, "animals": list(animals), "errors_px": errors}}


def test_tracker_findings_lead_only_where_the_bootstrap_interval_excludes_zero(rows,
                                                                               monkeypatch):
    # the verdict's logic on four animals; the minimum of groups has its own test
    monkeypatch.setattr("vit_facemap.bootstrap.MIN_GROUPS", 3)
    rng = np.random.default_rng(0)
    animals = np.repeat(["FG001", "Io", "Eos", "SS112"], 6)
    base = rng.uniform(2, 4, (24, 3))
    base[0, 2] = np.nan  # a keypoint without a label
    d = _with_errors(rows[3], base, animals)
    # the next best is 1 px worse on every animal: the default leads
    worse = _with_errors(rows[2], base + 1.0 + rng.normal(0, 0.05, base.shape), animals)
    f = tracker_findings([d, worse]).loc["schroeder"]
    assert f["default leads"] == "yes" and np.isclose(f["margin px"], 1.0, atol=0.05)
    assert f["verdict"].startswith("leads by 1.0") and "95% interval [" in f["verdict"]
    assert f["verdict"].endswith("bootstrap over 4 held-out animals)")
    # worse by 3 px on two animals, better by 2.4 px on the other two: a mean margin of
    # 0.26 px (FG001 has a point less) that the animals do not support
    mixed = base + np.where(np.isin(animals, ["FG001", "Io"]), 3.0, -2.4)[:, None]
    f = tracker_findings([d, _with_errors(rows[2], mixed, animals)]).loc["schroeder"]
    assert f["default leads"] == "not distinguishable"
    assert f["verdict"].startswith("not distinguishable on this split: margin 0.26 px (95% "
                                   "interval [-2.40, 3.00]")
    # one held-out animal (g7c1): blocks of consecutive frames are resampled
    frames30 = np.vstack([base, base[:6]])
    one = _with_errors(rows[1], frames30, ["G7"] * 30)
    f = tracker_findings([one, _with_errors(rows[0], frames30 + 1.0, ["G7"] * 30)]).loc["g7c1"]
    assert f["default leads"] == "yes"
    assert f["verdict"].endswith("bootstrap over 3 blocks of 10 consecutive frames from 1 "
                                 "held-out video)")
    # models scored on other frames cannot be paired
    other = _with_errors(rows[2], base[:-1] + 1.0, animals[:-1])
    f = tracker_findings([d, other]).loc["schroeder"]
    assert f["verdict"].endswith("(the two models were scored on different frames)")
    # a missed prediction makes a mean infinite: no interval, and no failure
    inf = base + 1.0
    inf[3, 1] = np.inf
    f = tracker_findings([d, _with_errors(rows[2], inf, animals)]).loc["schroeder"]
    assert f["default leads"] == "no interval" and "infinite" in f["verdict"]


def test_no_verdict_from_too_few_held_out_groups(rows):
    # one or two resampling units make every resample (nearly) the same: an interval that
    # "excludes zero" says nothing, so neither tracker nor classifier gets a verdict
    from vit_facemap.bootstrap import MIN_GROUPS

    base = np.random.default_rng(0).uniform(2, 4, (20, 3))
    one = _with_errors(rows[1], base, ["G7"] * 20)  # 2 blocks of 10 frames
    f = tracker_findings([one, _with_errors(rows[0], base + 28.0, ["G7"] * 20)]).loc["g7c1"]
    assert f["default leads"] == "no interval" and "95% interval" not in f["verdict"]
    assert "too few held-out groups (2) for an interval: 2 blocks of 10" in f["verdict"]
    animals = np.repeat([f"A{i}" for i in range(MIN_GROUPS)], 4)  # enough: a verdict
    base = np.random.default_rng(1).uniform(2, 4, (len(animals), 3))
    d = _with_errors(rows[3], base, animals)
    f = tracker_findings([d, _with_errors(rows[2], base + 1.0, animals)])
    assert f.loc["schroeder", "default leads"] == "yes"
    few = {g: VIT[g] for g in "AB"}
    text = "\n".join(classifier_findings(_per_animal(_summary(), few, {g: HOG[g] for g in "AB"}),
                                         "x"))
    assert "too few held-out groups (2) for an interval: 2 held-out animals" in text
    assert "no verdict on which is ahead" in text and "is ahead by" not in text


def test_tracker_findings_say_no_where_the_default_trails_beyond_doubt(rows):
    animals = np.repeat([f"A{i}" for i in range(5)], 4)
    base = np.random.default_rng(2).uniform(2, 4, (len(animals), 3))
    d = _with_errors(rows[3], base + 1.0, animals)  # the default 1 px worse on every animal
    f = tracker_findings([d, _with_errors(rows[2], base, animals)]).loc["schroeder"]
    assert f["default leads"] == "NO" and np.isclose(f["margin px"], -1.0)
    assert f["verdict"].startswith("trails by 1.00 px (95% interval [-1.00, -1.00]")


def test_tracker_findings_pair_frames_by_name_not_by_count(rows):
    animals = np.repeat([f"A{i}" for i in range(5)], 4)
    base = np.random.default_rng(3).uniform(2, 4, (len(animals), 3))
    d = _with_errors(rows[3], base, animals)
    other = _with_errors(rows[2], base + 1.0, animals)
    frames = other["per_frame"]["frames"]
    other["per_frame"]["frames"] = frames[1:] + frames[:1]  # as many frames, in other order
    f = tracker_findings([d, other]).loc["schroeder"]
    assert f["default leads"] == "no interval"
    assert f["verdict"].endswith("(the two models were scored on different frames)")


def test_macro_f1_interval_pairs_each_animals_matrices():
    from vit_facemap.bootstrap import macro_f1_difference

    vit = {**VIT, "E": [[4, 1], [1, 4]]}
    hog = {g: ({**HOG, "E": [[1, 4], [4, 1]]})[g] for g in sorted(vit, reverse=True)}
    summary = _per_animal(_summary(), vit, hog)
    assert list(summary["hog-rf"]["per_group"]) == ["E", "D", "C", "B", "A"]
    found, why = macro_f1_interval(summary)
    assert why == "" and found["over"] == "5 held-out animals"
    animals = sorted(vit)
    direct = macro_f1_difference([vit[g] for g in animals], [hog[g] for g in animals])
    assert (found["low"], found["high"]) == (direct["low"], direct["high"])
    assert found["estimate"] == pytest.approx(direct["estimate"])


def test_tracker_findings_compare_keypoints_only_with_a_reference_row(rows):
    # a table benchmarked without the mean shape (--models hybrid,cnn) has nothing to compare
    # the default's keypoints with: "none" said it beat the mean shape on every keypoint
    hybrid = {**rows[1], "per_keypoint_mean_px": {"eye": 4.5}}
    cnn = _row("g7c1", "cnn", 10.0, {"G7c1": (4, 10.0)}, {"v1": (3, 9.0), "v2": (1, 13.0)})
    f = tracker_findings([hybrid, cnn]).loc["g7c1"]
    assert f["keypoints not beating mean_shape"] == "not compared (no mean_shape row)"
    # a reference row without per-keypoint errors is named, as the default's is
    with pytest.raises(DataError, match="'mean_shape' row of 'g7c1' lacks 'per_keypoint"):
        tracker_findings([hybrid, rows[0]])


def test_tracker_findings_neither_lead_nor_trail_without_a_margin(rows):
    # equal means are a tie, not "trails by 0.00 px"; two infinite means (both models missed
    # a prediction) have no margin, not "trails by nan px"
    tie = [{**rows[2], "per_keypoint_mean_px": {"eye": 1.0}},
           {**rows[3], "mean_px": 99.0, "per_keypoint_mean_px": {"eye": 1.0}}]
    f = tracker_findings(tie).loc["schroeder"]
    assert f["margin px"] == 0.0 and f["default leads"] == "no interval"
    assert f["verdict"].startswith("level with it (margin 0.00 px); interval not available")
    inf = [{**r, "mean_px": np.inf} for r in tie]
    f = tracker_findings(inf).loc["schroeder"]
    assert f["verdict"].startswith("no margin (both mean errors are infinite); interval not")
    assert "nan" not in f["verdict"] and "trails" not in f["verdict"]


def test_tracker_findings_take_a_model_without_a_mean_error(rows):
    # mean_px null (no held-out label the model was scored on) was a TypeError, and a NaN
    # mean could be named the next best
    for r in rows:
        r["per_keypoint_mean_px"] = {"eye": 1.0}
    three = [rows[2], rows[3], _row("schroeder", "cnn", 7.0, {"Io": (2, 7.0)}, {"s2": (2, 7.0)})]
    for missing in (None, np.nan):
        three[0]["mean_px"] = missing  # the mean shape
        f = tracker_findings(three).loc["schroeder"]
        assert (f["next best"], f["margin px"]) == ("cnn", 2.0)
        three[0]["mean_px"], three[1]["mean_px"] = 99.0, missing  # the default
        f = tracker_findings(three).loc["schroeder"]
        assert np.isnan(f["default mean px"]) and np.isnan(f["margin px"])
        assert f["default leads"] == "no interval"
        assert f["verdict"].startswith("no margin (hybrid's mean error is not recorded)")
        three[1]["mean_px"] = 5.0
    # a set whose other models have no mean error has no next best: left out
    alone = [{**rows[0], "mean_px": None}, rows[1]]
    with pytest.raises(DataError, match="no set"):
        tracker_findings(alone)
    # and the message says why: the set has another model, without a mean error
    with pytest.raises(DataError, match="'hybrid' and another model with a mean error"):
        tracker_findings([{**r, "mean_px": None} for r in rows])


def _scored(set_name, model, errors):
    """A row with per-frame errors of two keypoints on frames f0, f1, ... of animals a, b."""
    frames = [f"labeled-data/s/f{i}.png" for i in range(len(errors))]
    return {"set": set_name, "model": model, "mean_px": 1.0,
            "per_keypoint_mean_px": {"eye": 1.0, "nose": 1.0},
            "per_frame": {"frames": frames, "animals": ["a", "b"] * (len(errors) // 2),
                          "errors_px": [[None if e is None else float(e) for e in f]
                                        for f in errors]}}


def test_shared_misses_rank_frames_by_the_closest_models_error():
    nan = None
    rows = [
        # f1's nose: both far off (a wrong label); f2's eye: one model far off, the other
        # close (that model's miss); f3: no nose label, and one missed (inf) prediction
        _scored("s", "cnn", [[1, 2], [40, 300], [90, 2], [5, nan]]),
        _scored("s", "hybrid", [[1, 3], [60, 250], [3, 1], [float("inf"), nan]]),
        _scored("s", "mean_shape", [[9, 9], [9, 9], [9, 9], [9, nan]]),  # not asked for
    ]
    found = shared_misses(rows, ["cnn", "hybrid"], n=3)
    assert found["frame"].tolist() == ["labeled-data/s/f1.png", "labeled-data/s/f3.png",
                                       "labeled-data/s/f2.png"]
    assert found["keypoint"].tolist() == ["nose", "eye", "eye"]
    assert found["closest px"].tolist() == [250.0, 5.0, 3.0]
    assert found["animal"].tolist() == ["b", "b", "a"]
    # f1's eye, 40 px off at best, is not missed by half as much as its nose: one label
    assert found["labels"].tolist() == [1, 1, 1]
    assert found[["cnn", "hybrid"]].to_numpy().tolist() == [[300, 250], [5, float("inf")],
                                                            [90, 3]]
    assert list(found.columns) == ["set", "frame", "animal", "keypoint", "closest px",
                                   "labels", "cnn", "hybrid"]
    # a frame whose labels all slipped counts every label missed by more than half as much
    rows[0]["per_frame"]["errors_px"][1][0] = 200.0
    rows[1]["per_frame"]["errors_px"][1][0] = 180.0
    assert shared_misses(rows, ["cnn", "hybrid"], n=1)["labels"].tolist() == [2]
    # one model: its own largest misses; a frame without any label is never listed
    one = shared_misses(rows, ["hybrid"], n=10)
    assert one["hybrid"].tolist() == [float("inf"), 250.0, 3.0, 3.0]
    rows[1]["per_frame"]["errors_px"][3] = [nan, nan]
    assert len(shared_misses(rows, ["hybrid"], n=10)) == 3


def test_shared_misses_refuse_what_they_cannot_compare():
    rows = [_scored("s", "cnn", [[1, 2], [3, 4]]), _scored("s", "hybrid", [[1, 2], [3, 4]])]
    rows[1]["per_frame"]["frames"] = rows[1]["per_frame"]["frames"][::-1]
    with pytest.raises(DataError, match="'s': 'hybrid' was scored on other held-out frames "
                                        "or keypoints than 'cnn'"):
        shared_misses(rows, ["cnn", "hybrid"])
    rows[1]["per_frame"]["frames"] = rows[0]["per_frame"]["frames"]
    rows[1]["per_frame"]["errors_px"] = [[1], [3]]  # one keypoint fewer
    with pytest.raises(DataError, match=r"'hybrid' was scored on other .* \(2 x 1 errors, 2 "
                                        r"frames x 2 keypoints\)"):
        shared_misses(rows, ["cnn", "hybrid"])
    # a model asked for that has no per-frame errors would narrow "closest" unseen
    del rows[1]["per_frame"]
    with pytest.raises(DataError, match="'s': the 'hybrid' row has no per-frame errors"):
        shared_misses(rows, ["cnn", "hybrid"])
    with pytest.raises(DataError, match=r"no set of the tracker table has a labeled held-out "
                                        r"frame scored by \['fmnet'\]"):
        shared_misses(rows, ["fmnet"])
    rows[0]["per_keypoint_mean_px"] = {"eye": 1.0}
    with pytest.raises(DataError, match=r"'cnn' was scored on other .* \(2 x 2 errors, 2 "
                                        r"frames x 1 keypoints\)"):
        shared_misses(rows[:1], ["cnn"])
    with pytest.raises(ValueError, match="n must be at least 1"):
        shared_misses(rows, ["cnn"], n=0)
    with pytest.raises(ValueError, match="no models to compare"):
        shared_misses(rows, [])


def test_shared_misses_count_a_label_every_model_missed_as_one_of_its_frame():
    inf = float("inf")
    rows = [_scored("s", "cnn", [[inf, 300], [1, 1]]), _scored("s", "hybrid", [[inf, 280], [2, 0]])]
    found = shared_misses(rows, ["cnn", "hybrid"], n=2)
    assert found["keypoint"].tolist() == ["eye", "eye"]
    assert found["closest px"].tolist() == [inf, 1.0]
    assert found["labels"].tolist() == [1, 1]  # the missed label itself; 280 px is not inf
