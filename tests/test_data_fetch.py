"""Fetch + convert, against a local HTTP server serving an archive made here (no internet)."""

import hashlib
import http.server
import threading
import zipfile
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from PIL import Image

from vit_facemap.errors import DataError, RunExistsError
from vit_facemap.fetch import REGISTRY, Source, fetch_set
from vit_facemap.validate import load_set

# A labels table as pandas writes it after reading DeepLabCut's file with one header row:
# this is how the upstream Schroeder table looks ("Unnamed: 1", "Lab.1", ...).
HEADER = (
    "scorer,Unnamed: 1,Unnamed: 2,Lab,Lab.1,Lab.2,Lab.3\n"
    "bodyparts,,,nose,nose,eye,eye\n"
    "coords,,,x,y,x,y\n"
)
VIDEOS = ["1._Volumes_data_RawData_Mimas2022-03-281", "2._Volumes_data_RawData_Rhea_2022-05-01_1_Video0"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """An archive shaped like a GitHub repository download, and a server for it."""
    base = tmp_path_factory.mktemp("upstream")
    repo = base / "facemap-f7b98d3"
    data = repo / "data" / "schroeder"
    data.mkdir(parents=True)
    (repo / "LICENSE").write_text("MIT License\n\nCopyright (c) test\n")
    rng = np.random.default_rng(0)
    rows, truth = [], []
    for v, video in enumerate(VIDEOS):
        for i in range(3):
            name = f"{video}_img{i:04d}.png"
            gray = rng.integers(0, 255, (60, 80), dtype=np.uint8)
            Image.fromarray(np.stack([gray] * 3, -1)).save(data / name)  # RGB with R = G = B
            xy = [10.0 + i, 20.0 + v, 41.5, 33.25] if (v, i) != (1, 2) else [10.0, 20.0, "", ""]
            rows.append(",".join(["labeled-data", video, name, *map(str, xy)]))
            truth.append(xy)
    (data / "labels.csv").write_text(HEADER + "\n".join(rows) + "\n")
    archive = base / "serve" / "f7b98d3.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(repo.rglob("*")):
            zf.write(p, p.relative_to(base).as_posix())
    requests_seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests_seen.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(archive.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/f7b98d3.zip"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    source = replace(REGISTRY["schroeder"], url=url, sha256=sha, labels=("*/data/schroeder/labels.csv",))
    yield {"source": source, "truth": truth, "requests": requests_seen}
    server.shutdown()


def test_fetch_converts_to_deeplabcut_layout(upstream, tmp_path):
    reg = {"schroeder": upstream["source"]}
    dest = fetch_set("schroeder", tmp_path / "schroeder", cache=tmp_path / "cache", registry=reg,
                     progress=False)
    frames = load_set(dest, expected_bodyparts=["nose", "eye"])
    assert sorted(set(frames.videos)) == ["Mimas2022-03-281", "Rhea_2022-05-01_1_Video0"]
    assert frames.scorer == "Lab"
    truth = np.array([[float(c) if c != "" else np.nan for c in row] for row in upstream["truth"]])
    np.testing.assert_array_equal(frames.keypoints.reshape(6, 4), truth * 0.5)  # halved
    assert frames.missing.sum() == 1
    with Image.open(frames.image_paths[0]) as im:
        assert im.mode == "L" and im.size == (40, 30)  # single channel, halved
    assert (dest / "LICENSE").read_text().startswith("MIT License")
    assert '"sha256_downloaded"' in (dest / "SOURCE.json").read_text()
    assert not (tmp_path / "schroeder.partial").exists()
    # second fetch into a new folder reuses the cached archive: no new request
    n = len(upstream["requests"])
    fetch_set("schroeder", tmp_path / "again", cache=tmp_path / "cache", registry=reg, progress=False)
    assert len(upstream["requests"]) == n
    with pytest.raises(RunExistsError):
        fetch_set("schroeder", dest, cache=tmp_path / "cache", registry=reg, progress=False)
    # --overwrite replaces a fetched set only once the new one is complete ...
    (dest / "SOURCE.json").write_text((dest / "SOURCE.json").read_text() + " ")
    fetch_set("schroeder", dest, cache=tmp_path / "cache", registry=reg, overwrite=True,
              progress=False)
    assert (dest / "SOURCE.json").read_text().endswith("}\n")
    assert not (tmp_path / "schroeder.replaced").exists()
    # ... and never deletes a folder of the user's own, nor a set when the download fails
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="no SOURCE.json"):
        fetch_set("schroeder", mine, cache=tmp_path / "cache", registry=reg, overwrite=True,
                  progress=False)
    assert (mine / "notes.txt").read_text() == "mine"
    gone = replace(upstream["source"], url=upstream["source"].url.replace("f7b98d3", "nope"))
    with pytest.raises(DataError, match="cannot download"):
        fetch_set("schroeder", dest, cache=tmp_path / "nocache", registry={"schroeder": gone},
                  overwrite=True, progress=False)
    assert load_set(dest, expected_bodyparts=["nose", "eye"]).keypoints.shape == (6, 2, 2)
    with pytest.raises(DataError, match="is a file"):
        fetch_set("schroeder", mine / "notes.txt", cache=tmp_path / "cache", registry=reg,
                  progress=False)


def test_overwrite_keeps_the_users_files(upstream, tmp_path, capsys):
    """--overwrite replaces what fetch wrote, never a file or folder of the user's."""
    import json

    reg = {"schroeder": upstream["source"]}
    kw = dict(cache=tmp_path / "cache", registry=reg, progress=False)
    dest = fetch_set("schroeder", tmp_path / "schroeder", **kw)
    (dest / "animals.csv").write_text("video,animal\nMimas2022-03-281,Mimas\n")  # as DATA.md says
    (dest / "labeled-data" / "notes.txt").write_text("mine")
    for name in ("schroeder.partial", "schroeder.replaced"):  # folders that only look like ours
        (tmp_path / name).mkdir()
        (tmp_path / name / "precious.txt").write_text("user data")
    fetch_set("schroeder", dest, overwrite=True, **kw)
    assert (dest / "animals.csv").read_text().endswith("Mimas\n")
    assert (dest / "labeled-data" / "notes.txt").read_text() == "mine"
    assert "kept 2 file(s) of yours" in capsys.readouterr().out
    for name in ("schroeder.partial", "schroeder.replaced"):
        assert (tmp_path / name / "precious.txt").read_text() == "user data"
    assert not list(tmp_path.glob("schroeder.fetching-*"))
    # a set fetched before SOURCE.json listed its files: what the new set lacks is kept
    record = json.loads((dest / "SOURCE.json").read_text())
    (dest / "SOURCE.json").write_text(json.dumps({k: v for k, v in record.items() if k != "files"}))
    fetch_set("schroeder", dest, overwrite=True, **kw)
    assert (dest / "animals.csv").is_file() and "files" in json.loads((dest / "SOURCE.json").read_text())
    # a file fetch did not write, at a path the new set writes: refused, nothing changed
    record = json.loads((dest / "SOURCE.json").read_text())
    record["files"].remove("LICENSE")
    (dest / "SOURCE.json").write_text(json.dumps(record))
    (dest / "LICENSE").write_text("my own license")
    with pytest.raises(DataError, match=r"did not write at paths the new set writes \(LICENSE\)"):
        fetch_set("schroeder", dest, overwrite=True, **kw)
    assert (dest / "LICENSE").read_text() == "my own license" and (dest / "animals.csv").is_file()
    assert not list(tmp_path.glob("schroeder.fetching-*"))



def test_dest_given_as_the_current_folder(upstream, tmp_path, monkeypatch):
    """--dest . (run inside the set, or in an empty folder made for it) was an OSError
    traceback: '.' cannot be renamed, nor removed."""
    kw = dict(cache=tmp_path / "cache", registry={"schroeder": upstream["source"]},
              progress=False)
    dest = tmp_path / "schroeder"
    dest.mkdir()
    monkeypatch.chdir(dest)
    assert fetch_set("schroeder", ".", **kw) == dest
    monkeypatch.chdir(dest)  # the set is a new folder in the empty one's place
    (dest / "animals.csv").write_text("video,animal\n")
    assert fetch_set("schroeder", ".", overwrite=True, **kw) == dest
    assert (dest / "animals.csv").is_file() and (dest / "SOURCE.json").is_file()
    assert len(load_set(dest)) == 6
    assert not list(tmp_path.glob("*.fetching-*"))



def test_cache_inside_dest_is_refused(upstream, tmp_path):
    """A --cache in --dest was an OSError traceback after the download and conversion (the
    archive kept the folder from being replaced by the new set)."""
    dest = tmp_path / "schroeder"
    for cache in (dest, dest / "cache"):
        with pytest.raises(DataError, match="is inside --dest"):
            fetch_set("schroeder", dest, cache=cache, registry={"schroeder": upstream["source"]},
                      progress=False)
        assert not dest.exists()


def test_hash_mismatch_is_refused(upstream, tmp_path):
    bad = replace(upstream["source"], sha256="0" * 64)
    with pytest.raises(DataError, match="failed its SHA-256 check"):
        fetch_set("schroeder", tmp_path / "out", cache=tmp_path / "cache",
                  registry={"schroeder": bad}, progress=False)
    assert not (tmp_path / "out").exists()


def test_unreachable_url(upstream, tmp_path):
    gone = replace(upstream["source"], url=upstream["source"].url.replace("f7b98d3", "nope"))
    with pytest.raises(DataError, match="cannot download"):
        fetch_set("schroeder", tmp_path / "out", cache=tmp_path / "cache",
                  registry={"schroeder": gone}, progress=False)
    # no server at all (as offline): the message says so
    closed = replace(upstream["source"], url="http://127.0.0.1:9/x.zip")
    with pytest.raises(DataError, match="no network connection"):
        fetch_set("schroeder", tmp_path / "out", cache=tmp_path / "cache",
                  registry={"schroeder": closed}, progress=False)



def test_unpinned_cache_is_per_url(upstream, tmp_path):
    """An unpinned archive was cached under one name whatever its URL: a source moved to
    another URL (another commit) was converted from the earlier URL's archive, and
    SOURCE.json named the new URL."""
    unpinned = replace(upstream["source"], sha256=None)
    kw = dict(cache=tmp_path / "cache", progress=False)
    fetch_set("schroeder", tmp_path / "a", registry={"schroeder": unpinned}, **kw)
    n = len(upstream["requests"])
    fetch_set("schroeder", tmp_path / "b", registry={"schroeder": unpinned}, **kw)
    assert len(upstream["requests"]) == n  # the same URL: from the cache
    moved = replace(unpinned, url=unpinned.url.replace("f7b98d3", "0000000"))
    with pytest.raises(DataError, match="cannot download"):
        fetch_set("schroeder", tmp_path / "c", registry={"schroeder": moved}, **kw)
    assert not (tmp_path / "c").exists()


def test_moved_files_are_reported(upstream, tmp_path):
    moved = replace(upstream["source"], labels=("*/elsewhere/*.csv",))
    with pytest.raises(DataError, match="no label table matching"):
        fetch_set("schroeder", tmp_path / "out", cache=tmp_path / "cache",
                  registry={"schroeder": moved}, progress=False)
    assert not (tmp_path / "out").exists()


def test_registry_is_data():
    for name, src in REGISTRY.items():
        assert isinstance(src, Source) and src.name == name
        assert src.url.startswith("https://github.com/") and src.labels and src.license.startswith("MIT")
        assert src.sha256 is None or len(src.sha256) == 64
    with pytest.raises(DataError, match="unknown set"):
        fetch_set("nope", "x")


def test_fetch_command(capsys, tmp_path):
    from vit_facemap.cli import main

    assert main(["data", "fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "g7c1:" in out and "schroeder:" in out and "not pinned" in out
    assert main(["data", "fetch", "schroeder"]) == 2
    assert "--dest is required" in capsys.readouterr().err
