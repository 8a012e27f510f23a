"""Label importers: each format's frame-index convention, matched against a real store built from
real media (``--detector none``), the mismatch report, and format errors with file, line, value."""

from __future__ import annotations

import numpy as np
import pytest
from media_fixtures import write_face_video, write_frame_folder
from store_fixtures import add_source, build_store, write_clip_folder

from aucli.errors import LabelFormatError, StoreError
from aucli.labels import import_labels, read_label_files
from aucli.store import CorpusStore, open_store


def labels_by_frame(store_path, name, key, au_names=None):
    """{frame: occurrence list} of the subject-track faces of source ``key``."""
    with open_store(store_path) as store:
        record = next(s for s in store.sources() if s.key == key)
        labels = store.read_labels(name, au_names=au_names)
        rows = store.frame_rows(record)
        return {frame: labels.occurrence[row].tolist() for frame, row in rows.items()}, labels


def test_bp4d_frame_is_the_number_in_the_image_name(tmp_path) -> None:
    write_frame_folder(tmp_path / "data" / "F001" / "T1", (2440, 2441, 2442), size=(96, 72), digits=4)
    write_frame_folder(tmp_path / "data" / "F002" / "T1", (1, 2), size=(96, 72), digits=4)
    store = build_store(tmp_path / "bp4d.h5", [tmp_path / "data"])
    occ = tmp_path / "AU_OCC"
    occ.mkdir()
    header = "0,1,2,3,4,6,7,10,12,14,15,17,23,24"
    rows = [
        "2440,1,0,0,0,0,0,0,1,0,0,0,0,9",
        "2441,0,1,0,0,0,0,0,0,0,0,0,0,0",
        "2442,9,9,9,9,9,9,9,9,9,9,9,9,9",
        "2450,1,1,0,1,1,1,1,1,1,1,1,1,1",  # no such frame image
    ]
    (occ / "F001_T1.csv").write_text("\n".join([header, *rows]) + "\n")
    report = import_labels(store, [occ], "bp4d", "human")
    assert report.au_names == ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"]
    by_frame, labels = labels_by_frame(store, "human", "F001/T1")
    assert by_frame[2440] == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, -1]
    assert by_frame[2441][:2] == [0, 1]
    assert by_frame[2442] == [-1] * 12  # 9 = not coded
    assert report.n_matched == 3 and report.recordings[0].missing == [2450]
    assert any("F001_T1.csv: 1 labelled frame(s) not in the store (frames 2450" in p for p in report.problems())
    assert report.sources_without_labels == ["F002/T1"]
    assert labels.attrs["format"] == "bp4d" and labels.attrs["matched_faces"] == 3
    assert (labels.occurrence[labels.labelled_rows()] >= -1).all() and labels.labelled_rows().size == 2


def test_disfa_line_k_is_video_frame_k_minus_1(tmp_path) -> None:
    # both cameras of one subject: DISFA's labels apply to each
    write_face_video(tmp_path / "data" / "LeftVideoSN001_comp.mp4", n_frames=6, size=(96, 64))
    write_face_video(tmp_path / "data" / "RightVideoSN001_comp.mp4", n_frames=6, size=(96, 64))
    store = build_store(tmp_path / "disfa.h5", [tmp_path / "data"])
    labels_dir = tmp_path / "labels" / "SN001"
    labels_dir.mkdir(parents=True)
    (labels_dir / "SN001_au1.txt").write_text("1,0\n2,3\n3,1\n4,2\n5,0\n6,5\n7,4\n")  # 7 lines, 6 frames
    (labels_dir / "SN001_au12.txt").write_text("1,5\n2,0\n3,0\n4,0\n5,0\n6,0\n")
    report = import_labels(store, [tmp_path / "labels"], "disfa", "human")
    assert report.au_names == ["AU1", "AU12"]
    for key in ("LeftVideoSN001_comp.mp4", "RightVideoSN001_comp.mp4"):
        by_frame, labels = labels_by_frame(store, "human", key)
        assert [by_frame[f][0] for f in range(6)] == [0, 1, 0, 1, 0, 1]  # intensities 0,3,1,2,0,5 >= 2
        assert by_frame[0][1] == 1 and by_frame[1][1] == 0
    with open_store(store) as opened:
        intensity = opened.read_labels("human").intensity
        rows = opened.frame_rows(opened.find_source("LeftVideoSN001_comp.mp4"))
        assert [intensity[rows[f], 0] for f in range(6)] == [0, 3, 1, 2, 0, 5]
    assert report.recordings[0].missing == [6] and report.n_matched == 12
    lenient = import_labels(store, [tmp_path / "labels"], "disfa", "lenient", threshold=1)
    by_frame, labels = labels_by_frame(store, "lenient", "LeftVideoSN001_comp.mp4")
    assert [by_frame[f][0] for f in range(6)] == [0, 1, 1, 1, 0, 1] and labels.attrs["threshold"] == 1.0
    assert lenient.n_matched == 12


def test_openface_frames_are_1_based_and_failed_rows_unknown(tmp_path) -> None:
    write_face_video(tmp_path / "data" / "clip.mp4", n_frames=6, size=(96, 64))
    store = build_store(tmp_path / "of.h5", [tmp_path / "data"])
    header = "frame, face_id, timestamp, confidence, success, AU01_r, AU12_r, AU01_c, AU12_c, AU28_c"
    rows = [
        "1, 0, 0.00, 0.98, 1, 2.50, 0.00, 1.00, 0.00, 0.00",
        "2, 0, 0.04, 0.98, 1, 0.00, 3.10, 0.00, 1.00, 1.00",
        "3, 0, 0.08, 0.10, 0, 4.00, 4.00, 1.00, 1.00, 1.00",  # tracking failed: unknown, not negative
        "3, 1, 0.08, 0.90, 1, 0.00, 0.00, 0.00, 0.00, 0.00",  # another face: ignored
        "4, 0, 0.12, 0.98, 1, 0.00, 0.00, 0.00, 0.00, 0.00",
    ]
    (tmp_path / "clip.csv").write_text("\n".join([header, *rows]) + "\n")
    report = import_labels(store, [tmp_path / "clip.csv"], "openface", "openface")
    assert report.au_names == ["AU1", "AU12", "AU28"]
    by_frame, labels = labels_by_frame(store, "openface", "clip.mp4")
    assert by_frame[0] == [1, 0, 0] and by_frame[1] == [0, 1, 1]
    assert by_frame[2] == [-1, -1, -1] and by_frame[3] == [0, 0, 0]
    assert by_frame[4] == [-1, -1, -1] and by_frame[5] == [-1, -1, -1]  # not in the CSV
    assert labels.intensity[0].tolist()[:2] == [2.5, 0.0] and np.isnan(labels.intensity[0, 2])  # AU28: presence only
    assert any("row(s) of other faces" in p for p in report.problems())
    # OpenFace has no AU24: asked for, it is unknown everywhere, never 0
    bp4d_view, _ = labels_by_frame(store, "openface", "clip.mp4", au_names=["AU1", "AU12", "AU24"])
    assert [bp4d_view[f][2] for f in range(6)] == [-1] * 6
    report = import_labels(store, [tmp_path / "clip.csv"], "openface", "of-bp4d", au_names=["AU1", "AU24"])
    assert report.known["AU24"] == 0 and any("AU24: not coded in the files" in p for p in report.problems())


def test_casme2_onset_to_offset_with_side_codes(tmp_path) -> None:
    write_clip_folder(tmp_path / "CASME2" / "sub01" / "EP02_01f", range(46, 51))
    store = build_store(tmp_path / "casme.h5", [tmp_path / "CASME2"])
    sheet = tmp_path / "coding.csv"
    sheet.write_text(
        "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n"
        "01,EP02_01f,47,/,49,4+L10,disgust\n"
        "02,EP01_01,10,12,20,R12,happiness\n"
    )
    report = import_labels(store, [sheet], "casme2", "coded")
    assert report.au_names == ["AU4", "AU10", "AU10L", "AU12", "AU12R"]
    by_frame, _ = labels_by_frame(store, "coded", "sub01/EP02_01f")
    assert by_frame[46] == [-1] * 5 and by_frame[50] == [-1] * 5  # outside onset..offset
    for frame in (47, 48, 49):
        assert by_frame[frame] == [1, 1, 1, 0, 0]
    assert report.unmatched == ["coding.csv [sub02/EP01_01]"]


def test_plain_csv_and_labels_attach_to_the_subject_track(tmp_path) -> None:
    path = tmp_path / "multi.h5"
    with CorpusStore.create(path, crop_size=16) as store:
        add_source(store, "clips/a.mp4", range(4), tracks=2)  # two faces on every frame
        add_source(store, "clips/b.mp4", range(3))
    (tmp_path / "labels.csv").write_text(
        "source,frame,AU12,AU06_c,AU12_r\n"
        "clips/a.mp4,0,1,0,3.5\n"
        "a,1,0,,\n"  # the file stem names the source too; empty = unknown
        "b.mp4,2,-1,1,0\n"
    )
    report = import_labels(path, [tmp_path / "labels.csv"], "csv", "human")
    with open_store(path) as store:
        labels = store.read_labels("human")
        assert labels.au_names == ["AU6", "AU12"]
        assert labels.occurrence[0].tolist() == [0, 1] and labels.occurrence[1].tolist() == [-1, -1]  # row 1: track 1
        assert labels.occurrence[2].tolist() == [-1, 0] and labels.occurrence[10].tolist() == [1, -1]
        assert labels.intensity[0].tolist()[1] == 3.5 and np.isnan(labels.intensity[2, 1])
    assert report.n_matched == 3 and report.n_faces_unlabelled == 2 + 2


@pytest.mark.parametrize(
    ("format", "name", "content", "message"),
    [
        ("bp4d", "F001_T1.csv", "0,1,smile\n2440,1,0\n", r"F001_T1.csv, line 1: unknown AU name 'smile' in the header"),
        ("bp4d", "F001_T1.csv", "0,1,2\n2440,1,0\n2441,2,0\n", r"F001_T1.csv, line 3: value '2' for AU1; BP4D codes 0, 1 or 9"),
        ("bp4d", "F001T1.csv", "0,1\n1,1\n", r"F001T1.csv: BP4D label files are named SUBJECT_TASK.csv"),
        ("disfa", "SN001_au1.txt", "1,0\n2,7\n", r"SN001_au1.txt, line 2: intensity '7' is outside 0-5"),
        ("disfa", "SN001_au1.txt", "1,0\n3,1\n", r"SN001_au1.txt, line 2: frame 3, expected 2 \(DISFA numbers frames 1, 2, 3"),
        ("disfa", "SN001_au99.txt", "1,0\n", r"SN001_au99.txt: unknown AU '99' \(AU99 is not a FACS action unit"),
        ("openface", "clip.csv", "frame, success, AU01_c\n1, 1, 0.5\n", r"clip.csv, line 2: AU01_c value '0.5' is not 0 or 1"),
        ("openface", "clip.csv", "frame, success, AU77_c\n1, 1, 1\n", r"clip.csv, line 1: unknown AU 'AU77'"),
        (
            "openface",
            "clip.csv",
            "frame, success, AU01_c\n0, 1, 1\n",
            r"clip.csv, line 2: frame 0; OpenFace numbers frames from 1",
        ),
        (
            "casme2",
            "sheet.csv",
            "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units\n1,EP1,5,/,9,4+X10\n",
            r"sheet.csv, line 2: unknown AU name 'X10'",
        ),
        (
            "casme2",
            "sheet.csv",
            "Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units\n1,EP1,9,/,5,4\n",
            r"sheet.csv, line 2: OffsetFrame 5 is before OnsetFrame 9",
        ),
        ("csv", "l.csv", "source,frame,AU12,happy\na,0,1,1\n", r"l.csv, line 1: unknown AU name 'happy'"),
        ("csv", "l.csv", "source,frame,AU12\na,0,yes\n", r"l.csv, line 2: AU12 value 'yes'; expected 1, 0, or -1 / 9 / empty"),
        ("csv", "l.csv", "source,frame,AU12\na,0,1\na,0,0\n", r"l.csv, line 3: source 'a' frame 0 is labelled twice"),
    ],
)
def test_format_errors_name_file_line_and_value(tmp_path, format, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(LabelFormatError, match=message):
        read_label_files([path], format)


def test_labels_for_frames_that_do_not_exist_write_nothing(tmp_path) -> None:
    write_frame_folder(tmp_path / "data" / "F001" / "T1", (1, 2), size=(96, 72))
    store = build_store(tmp_path / "s.h5", [tmp_path / "data"])
    (tmp_path / "F001_T1.csv").write_text("0,1\n500,1\n501,0\n")
    with pytest.raises(
        LabelFormatError, match=r"none of the 2 labelled frames in 1 file\(s\) matches a stored face .*frames 500-501"
    ):
        import_labels(store, [tmp_path / "F001_T1.csv"], "bp4d", "human")
    (tmp_path / "F009_T1.csv").write_text("0,1\n1,1\n")
    with pytest.raises(LabelFormatError, match=r"1 recording\(s\) have no stored source, e.g. F009_T1.csv"):
        import_labels(store, [tmp_path / "F009_T1.csv"], "bp4d", "human")
    with open_store(store) as opened:
        assert opened.label_sets() == []
    (tmp_path / "good.csv").write_text("source,frame,AU1\nF001/T1,1,1\n")
    import_labels(store, [tmp_path / "good.csv"], "csv", "human")
    with pytest.raises(StoreError, match=r"label set 'human' already exists"):
        import_labels(store, [tmp_path / "good.csv"], "csv", "human")
