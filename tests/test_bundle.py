"""The offline bundle: the per-notebook table, the dependency closure, the data it copies, the
results archive (size cap, checks before import) and a CPU round trip through run.sh."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from reslab import catalog, cli, results
from reslab.app import bundle, check
from reslab.app.bundle import NOT_NEEDED_HEADLESS, NOTEBOOKS, Have
from reslab.data import get_spec, write_synthetic
from reslab.profiles import resolve_profile
from reslab.tables import drstn

REPO = Path(__file__).resolve().parent.parent
PY = "%d.%d" % sys.version_info[:2]


# ------------------------------------------------------------------ the table of notebooks

def test_every_notebook_but_the_summary_has_an_entry():
    notebooks = set(catalog.list_notebooks()) - set(catalog.ACROSS_PROFILES)
    assert notebooks == set(NOTEBOOKS), (f"no entry in reslab.app.bundle.NOTEBOOKS for "
                                         f"{sorted(notebooks - set(NOTEBOOKS))}; entries without a notebook: "
                                         f"{sorted(set(NOTEBOOKS) - notebooks)}")
    with pytest.raises(ValueError, match="not bundled"):
        bundle.needs("summary")


def test_notebook_runtime_never_jupyterlab_and_grad_cam_only_for_table1():
    every = {canonicalize_name(r.name) for r in bundle.reslab_requirements(PY)}
    for name in NOTEBOOKS:
        assert {canonicalize_name(r) for r in NOTEBOOKS[name].requires} <= every
        runtime = {canonicalize_name(r.name) for r in bundle.runtime_requirements([name], PY)}
        assert {"papermill", "ipykernel", "ipywidgets", "nbval"} <= runtime
        assert "jupyterlab" not in runtime
        assert ("grad-cam" in runtime) == (name == "drstn_table1_gradcam")


# ------------------------------------------------------------------ the dependency closure

class FakeDist:
    """What :func:`reslab.app.bundle.resolve` reads of an installed distribution."""

    def __init__(self, name: str, version: str, requires=(), requires_python: str | None = None):
        self.version = version
        self.requires = list(requires)
        self.metadata = {"Name": name} | ({"Requires-Python": requires_python} if requires_python else {})


def _dists(*dists: FakeDist) -> dict[str, FakeDist]:
    return {canonicalize_name(d.metadata["Name"]): d for d in dists}


def _resolve(roots, have=None, python="3.11", dists=(), **kwargs):
    return bundle.resolve([Requirement(r) for r in roots], have or Have({}, "none"), python, _dists(*dists), **kwargs)


PAPERMILL = FakeDist("papermill", "2.7.0", ['aiohttp>=3.9; python_version == "3.12"', "click", "tqdm>=4",
                                            'black>=19; extra == "black"'])


def test_markers_are_evaluated_for_the_target_python_and_extras_followed():
    dists = (PAPERMILL, FakeDist("click", "8.1.0"), FakeDist("tqdm", "4.66.0", ['colorama; platform_system == "Windows"']),
             FakeDist("jsonschema", "4.0", ["attrs", 'fqdn; extra == "format"']), FakeDist("attrs", "23.1"),
             FakeDist("fqdn", "1.5"))
    on311 = _resolve(["papermill"], python="3.11", dists=dists)
    assert on311.pins == {"papermill": "2.7.0", "click": "8.1.0", "tqdm": "4.66.0"}
    assert on311.needed_by["click"] == "papermill" and on311.requirements()[0] == "click==8.1.0"
    with pytest.raises(ValueError, match=r"aiohttp>=3.9 \(needed by papermill\) is not installed here.*pip install"):
        _resolve(["papermill"], python="3.12", dists=dists)
    skipped = _resolve(["papermill"], python="3.12", dists=dists, skip=NOT_NEEDED_HEADLESS)
    assert "aiohttp" not in skipped.pins and skipped.left_out == {"aiohttp": ["papermill"]}
    assert "fqdn" not in _resolve(["jsonschema"], dists=dists).pins
    assert _resolve(["jsonschema[format]"], dists=dists).pins["fqdn"] == "1.5"


def test_the_targets_packages_end_the_walk_and_must_include_torch():
    dists = (FakeDist("timm", "1.0", ["torch", "pyyaml"]), FakeDist("torch", "2.5", ["sympy"]), FakeDist("sympy", "1.0"),
             FakeDist("pyyaml", "6.0"), FakeDist("traitlets", "5.14"), FakeDist("nbformat", "5.10", ["traitlets>=5.1"]))
    closure = _resolve(["timm", "nbformat"], Have({"torch": None, "timm": None, "traitlets": "5.14"}, "have.txt"),
                       dists=dists)
    assert set(closure.pins) == {"nbformat"}
    assert closure.relied_on == {"timm": ["reslab"], "traitlets": ["nbformat"]}
    old = _resolve(["nbformat"], Have({"torch": None, "traitlets": "4.0"}, "have.txt"), dists=dists)
    assert old.pins["traitlets"] == "5.14" and "traitlets==4.0" in old.notes[0]
    with pytest.raises(ValueError, match="must have torch itself"):
        _resolve(["timm"], Have({"pyyaml": None}, "have.txt"), dists=dists)
    with pytest.raises(ValueError, match="install a newer torch there"):
        _resolve(["torch>=2.4"], Have({"torch": "2.1.0"}, "have.txt"), dists=dists)
    with pytest.raises(ValueError, match=r"not installable on Python 3.9: nbformat==5.10 \(Requires-Python >=3.10\)"):
        _resolve(["nbformat"], python="3.9", dists=(FakeDist("nbformat", "5.10", requires_python=">=3.10"),))


def test_opencv_python_and_headless_satisfy_each_other_and_the_headless_one_is_bundled():
    gradcam = FakeDist("grad-cam", "1.5.7", ["opencv-python", "numpy"])
    numpy = FakeDist("numpy", "2.0")
    have = Have({"opencv-python-headless": "4.10.0.84", "numpy": None, "torch": None}, "have.txt")
    closure = _resolve(["grad-cam"], have, dists=(gradcam, numpy))
    assert set(closure.pins) == {"grad-cam"} and "opencv-python-headless" in closure.relied_on
    headless_here = _resolve(["grad-cam"], dists=(gradcam, numpy, FakeDist("opencv-python-headless", "4.10.0.84",
                                                                            ["numpy>=2"])))
    assert headless_here.pins["opencv-python-headless"] == "4.10.0.84"
    assert "opencv-python" not in headless_here.pins and "opencv-python-headless==4.10.0.84" in headless_here.requirements()
    gui_here = _resolve(["grad-cam"], dists=(gradcam, numpy, FakeDist("opencv-python", "4.9.0.80", ["numpy"])))
    assert gui_here.requirements() == ["grad-cam==1.5.7", "numpy==2.0", "opencv-python-headless==4.9.0.80"]
    reverse = _resolve(["opencv-python-headless"], Have({"opencv-python": None, "torch": None}, "have.txt"))
    assert not reverse.pins and reverse.relied_on == {"opencv-python": ["reslab"]}


def test_have_file_is_read_as_pip_list_freeze(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# pip list --format=freeze\nTorch==2.5.1+cu124\nopencv_python_headless==4.10.0.84\n"
                    "-e git+https://example.org/x.git@abc#egg=local_pkg\nfoo @ file:///wheels/foo-1.0-py3-none-any.whl\n"
                    "--index-url https://example.org/simple\n\n")
    got = bundle.read_have(have)
    assert got.versions == {"torch": "2.5.1+cu124", "opencv-python-headless": "4.10.0.84", "local-pkg": None,
                            "foo": None}
    assert got.provider("opencv-python") == "opencv-python-headless" and got.source == "have.txt"
    have.write_text("torch==2.5\nthis is not a package\n")
    with pytest.raises(ValueError, match="line 2"):
        bundle.read_have(have)
    have.write_text("# nothing\n")
    with pytest.raises(ValueError, match="names no package"):
        bundle.read_have(have)


def test_closure_of_the_installed_environment():
    stock = bundle.stock_have(PY)
    assert {"torch", "torchvision", "timm", "pandas", "numpy", "matplotlib", "tqdm"} <= set(stock.versions)
    selu = bundle.resolve(bundle.runtime_requirements(["selu_ablation_fashion_mnist"], PY), stock, PY,
                          skip=NOT_NEEDED_HEADLESS)
    assert {"papermill", "ipykernel", "ipywidgets", "nbval", "nbformat", "nbclient", "pyzmq"} <= set(selu.pins)
    assert not {"torch", "pandas", "numpy", "jupyterlab", "grad-cam", "debugpy", "jedi"} & set(selu.pins)
    assert set(selu.left_out) >= {"debugpy", "jedi"}
    # The stock image has Grad-CAM's OpenCV, SciPy and scikit-learn; a machine without them gets them.
    table1 = bundle.resolve(bundle.runtime_requirements(["drstn_table1_gradcam"], PY), stock, PY)
    assert "grad-cam" in table1.pins and not {"opencv-python-headless", "scikit-learn", "scipy"} & set(table1.pins)
    bare = Have({n: None for n in ("torch", "torchvision", "numpy", "pillow")}, "have.txt")
    full = bundle.resolve(bundle.runtime_requirements(["drstn_table1_gradcam"], PY), bare, PY)
    assert {"grad-cam", "opencv-python-headless", "scikit-learn", "scipy", "pandas"} <= set(full.pins)


def test_a_pure_python_distribution_is_packed_into_a_wheel(tmp_path):
    dist = bundle.installed_distributions()["tenacity"]
    wheel = bundle.repack_wheel(dist, tmp_path)
    assert wheel.name == f"tenacity-{dist.version}-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        record = zf.read(f"tenacity-{dist.version}.dist-info/RECORD").decode()
    assert "tenacity/__init__.py" in names and f"tenacity-{dist.version}.dist-info/METADATA" in names
    assert not any(n.endswith(".pyc") for n in names) and "tenacity/__init__.py,sha256=" in record
    with pytest.raises(ValueError, match="not a pure-Python"):
        bundle.repack_wheel(bundle.installed_distributions()["pyzmq"], tmp_path)


# ------------------------------------------------------------------ data sets

def test_datasets_per_notebook_and_narrowing():
    wanted, params = bundle.plan_datasets(["drstn_table5_transfer"], ["mnist"])
    assert wanted == {"mnist": ["drstn_table5_transfer"]}  # CIFAR-10 only if V5's run must be trained there
    assert params == {"datasets": ["mnist"]}
    wanted, params = bundle.plan_datasets(["datasets", "selu_ablation_fashion_mnist"], None)
    assert set(wanted) == {"mnist", "fashion_mnist", "cifar10"} and params == {}
    with pytest.raises(ValueError, match="no parameter to leave one out"):
        bundle.plan_datasets(["drstn_table4_cifar10", "drstn_table5_transfer"], ["mnist"])
    with pytest.raises(ValueError, match="differently"):
        bundle.plan_datasets(["datasets", "drstn_table5_transfer"], ["mnist", "cifar10"])
    with pytest.raises(ValueError, match="unknown data set"):
        bundle.plan_datasets(["datasets"], ["imagenet"])


def test_the_files_the_loader_reads_are_the_ones_copied(tmp_path, shared_data):
    root, files = bundle.dataset_files("fashion_mnist", shared_data)
    assert root == shared_data and len(files) == 4 and all(f.parent.name == "fashion-mnist" for f in files)
    write_synthetic(get_spec("cifar10"), tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "readme.html").write_text("not read")
    root, files = bundle.dataset_files("cifar10", tmp_path)
    assert sorted(f.name for f in files) == [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    assert bundle.dataset_files("mnist", tmp_path) is None  # and the session's download folder is empty
    root, files = bundle.dataset_files("cifar10", shared_data)
    assert [f.name for f in files] == ["cifar10-jpeg.tar.gz"]


# ------------------------------------------------------------------ export and import

def _run(runs: Path, rel: str, model: str, checkpoint_mb: float = 0) -> None:
    folder = runs / rel
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"row": {"model": model, "seed": 0}, "columns": ["model"]}))
    (folder / "history.csv").write_text("epoch,test_acc\n1,0.5\n")
    if checkpoint_mb:
        (folder / "last.pt").write_bytes(os.urandom(int(checkpoint_mb * (1 << 20))))  # incompressible, as weights


def _results(root: Path, profile: str, name: str) -> None:
    folder = root / profile / name
    folder.mkdir(parents=True)
    (folder / "table.csv").write_text("a,b\n1,2\n")
    (folder / "manifest.json").write_text(json.dumps({"table": name, "profile": profile, "code": {}}))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("RESLAB_RUNS", raising=False)
    root = tmp_path / "results"
    _results(root, "smoke", "drstn_table4_cifar10")
    runs = root / "_runs" / "smoke" / "drstn_table4_cifar10"
    _run(runs.parent.parent, "smoke/drstn_table4_cifar10/DRSTN_KS_3_3__RB_2_2_2-s0-aaaa", "drstn_v5", 3)
    _run(runs.parent.parent, "smoke/drstn_table4_cifar10/Original_Resnet18-s0-bbbb", "resnet18", 3)
    _run(runs.parent.parent, "smoke/drstn_table4_cifar10/SKNet-18-s0-cccc", "skresnet18", 3)
    return root


def test_export_keeps_the_archive_under_the_cap_and_lists_what_it_left_out(store, tmp_path, capsys):
    archive = bundle.export_results(store, "smoke", ["drstn_table4_cifar10", "drstn_table1_gradcam"], tmp_path / "out",
                                    max_mb=4.5)
    assert archive.name == "reslab-results-smoke-drstn_table4_cifar10+drstn_table1_gradcam.tar.gz"
    assert archive.stat().st_size <= 4.5 * (1 << 20)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        info = json.loads(tar.extractfile("archive.json").read())
    v5 = "_runs/smoke/drstn_table4_cifar10/DRSTN_KS_3_3__RB_2_2_2-s0-aaaa"
    resnet = "_runs/smoke/drstn_table4_cifar10/Original_Resnet18-s0-bbbb"
    assert f"{v5}/last.pt" in names and f"{resnet}/last.pt" not in names  # V5: read by Tables 5 and 1, first
    assert f"{resnet}/result.json" in names and f"{resnet}/history.csv" in names
    assert not any(n.endswith("SKNet-18-s0-cccc/last.pt") for n in names)  # no later notebook reads it
    assert info["checkpoints"] == [f"{v5}/last.pt"]
    assert [c["path"] for c in info["checkpoints_left_out"]] == [f"{resnet}/last.pt"]
    assert info["notebooks"] == ["drstn_table4_cifar10"] and info["not_finished"] == ["drstn_table1_gradcam"]
    out = capsys.readouterr().out
    assert "checkpoint left out" in out and "Original_Resnet18" in out and "not finished" in out
    with pytest.raises(ValueError, match="alone take"):
        bundle.export_results(store, "smoke", None, tmp_path / "out2", max_mb=0.0002)


def test_import_places_results_and_merges_runs(store, tmp_path, capsys):
    archive = bundle.export_results(store, "smoke", None, tmp_path / "out")
    home = tmp_path / "home"
    _run(home / "_runs", "smoke/drstn_table4_cifar10/SKNet-18-s0-cccc", "kept-here")  # a finished run already here
    (home / "smoke" / "drstn_table4_cifar10").mkdir(parents=True)
    (home / "smoke" / "drstn_table4_cifar10" / "old.csv").write_text("old")
    assert cli.main(["import", str(archive), "--results", str(home)]) == 0
    out = capsys.readouterr().out
    placed = home / "smoke" / "drstn_table4_cifar10"
    assert (placed / "table.csv").is_file() and not (placed / "old.csv").exists()
    assert "replaced the one that was there" in out and "reslab reproduce --check" in out
    assert "reslab reproduce --only summary" in out
    runs = home / "_runs" / "smoke" / "drstn_table4_cifar10"
    assert (runs / "DRSTN_KS_3_3__RB_2_2_2-s0-aaaa" / "last.pt").is_file()
    assert "kept-here" in (runs / "SKNet-18-s0-cccc" / "result.json").read_text()
    assert not list(home.glob(".import-*")) and not list(runs.glob(".*"))
    assert cli.main(["import", str(archive), "--results", str(home), "--force"]) == 0
    assert "skresnet18" in (runs / "SKNet-18-s0-cccc" / "result.json").read_text()


def _tar(path: Path, entries: list[tuple[str, str, bytes | str]]) -> Path:
    """A tar of ``(kind, name, data-or-link-target)`` members: kind ``file``, ``dir``, ``sym`` or ``hard``."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            info.linkname = data if kind in ("sym", "hard") else ""
            tar.addfile(info)
    return path


GOOD = [("file", "archive.json", json.dumps({"format": "reslab-results"}).encode()),
        ("file", "results/smoke/datasets/manifest.json", b"{}"), ("file", "results/smoke/datasets/a.csv", b"x")]


@pytest.mark.parametrize("extra, message", [
    ([("file", "results/smoke/datasets/../../../x", b"x")], "'..'"),
    ([("file", "/etc/x", b"x")], "absolute path"),
    ([("sym", "results/smoke/datasets/link", "/etc/passwd")], "is a link"),
    ([("hard", "results/smoke/datasets/hard", "results/smoke/datasets/a.csv")], "is a link"),
    ([("file", "notes.txt", b"x")], "outside results/"),
    ([("file", "results/summary/headline.csv", b"x")], "not a profile"),
    ([("file", "results/smoke/.staging-x/a.csv", b"x")], "not a notebook"),
    ([("file", "_runs/smoke/drstn_table4_cifar10/last.pt", b"x")], "outside a run folder"),
    ([("file", "results/smoke/other/a.csv", b"x")], "no manifest.json"),
    ([("file", "results/smoke/datasets/a.csv", b"y")], "appears twice"),
])
def test_import_refuses_a_bad_archive_and_writes_nothing(tmp_path, extra, message, capsys):
    archive = _tar(tmp_path / "bad.tar.gz", GOOD + extra)
    home = tmp_path / "home"
    assert cli.main(["import", str(archive), "--results", str(home)]) == 2
    assert message in capsys.readouterr().err
    assert not home.exists()


def test_import_needs_archive_json(tmp_path, capsys):
    archive = _tar(tmp_path / "bad.tar.gz", GOOD[1:])
    assert cli.main(["import", str(archive), "--results", str(tmp_path / "home")]) == 2
    assert "no archive.json" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()
    (tmp_path / "plain.txt").write_text("not a tar")
    assert cli.main(["import", str(tmp_path / "plain.txt"), "--results", str(tmp_path / "home")]) == 2
    assert "not a readable tar archive" in capsys.readouterr().err


# ------------------------------------------------------------------ commit, --param

def test_git_commit_falls_back_to_the_bundles_commit_without_a_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(results.subprocess, "run", no_git)
    monkeypatch.setenv(results.COMMIT_ENV, "0123456789ab")
    results.git_commit.cache_clear()
    try:
        assert results.git_commit() == "0123456789ab"
        monkeypatch.delenv(results.COMMIT_ENV)
        results.git_commit.cache_clear()
        assert results.git_commit() == "unknown"
    finally:
        results.git_commit.cache_clear()


def test_reproduce_passes_param_to_the_notebooks_that_declare_it(tmp_path, monkeypatch, capsys):
    import nbformat as nbf

    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(catalog, "notebooks_dir", lambda: folder)
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbf.v4.new_code_cell('profile = "smoke"\nseeds = [0]\nout_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbf.v4.new_code_cell(
        "from reslab.results import output_dir\n(output_dir('datasets', profile, out_dir) / 'v.txt').write_text(repr(seeds))")]
    nbf.write(nb, folder / "datasets.ipynb")
    out = tmp_path / "r"
    assert cli.main(["reproduce", "--results", str(out), "--param", "seeds=[3, 4]"]) == 0
    assert (out / "smoke" / "datasets" / "v.txt").read_text() == "[3, 4]"
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--results", str(out), "--param", "nope=1"])
    assert "no notebook among datasets declares it" in capsys.readouterr().err


# ------------------------------------------------------------------ the round trip

def _stock_environment(tmp_path: Path) -> Path:
    """A venv (with pip) that sees only the stock packages of this environment, through a ``.pth``
    file naming a folder of links to their top-level files; returns its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    farm = tmp_path / "stock"
    farm.mkdir()
    installed = bundle.installed_distributions()
    for name in bundle.stock_have(PY).versions:
        dist = installed.get(name)
        for entry in (dist.files or []) if dist else []:
            parts = PurePosixPath(str(entry)).parts
            if not parts or parts[0] in ("..", "__pycache__") or (farm / parts[0]).is_symlink():
                continue
            source = Path(dist.locate_file(parts[0]))
            if source.exists():
                (farm / parts[0]).symlink_to(source)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "reslab_stock.pth").write_text(f"{farm}\n")
    return venv / "bin" / "python"


@pytest.mark.slow
def test_round_trip_bundle_run_sh_export_import(tmp_path, shared_data, capsys):
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "reslab", "notebooks", "pyproject.toml"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the bundle takes its code from git; this is not a git checkout")
    made = tmp_path / "bundle"
    code = cli.main(["bundle", "--only", "selu_ablation_fashion_mnist", "--profile", "smoke", "--python", PY,
                     "--data-root", str(shared_data), "--param", 'variants=["ResNet34"]', "--param", "seeds=[0]",
                     str(made)])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((made / "bundle.json").read_text())
    assert manifest["git_commit"] == sha and set(manifest["datasets"]) == {"fashion_mnist"}
    assert {"wheels", "data", "src", "runs"} <= set(manifest["sizes"]) and (made / "run.sh").is_file()
    assert sorted(p.name for p in (made / "src" / "notebooks").iterdir()) == ["selu_ablation_fashion_mnist.ipynb"]

    copy = tmp_path / "there" / "bundle"
    shutil.copytree(made, copy)
    python = _stock_environment(tmp_path)
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    env = {"PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path / "tmp"), "DOCTOR": "0"}  # reslab doctor has its own test (test_doctor.py)
    before = subprocess.run([str(python), "-c", "import papermill"], env=env, capture_output=True, text=True)
    assert before.returncode != 0 and "papermill" in before.stderr
    out = tmp_path / "there" / "out"
    proc = subprocess.run(["bash", str(copy / "run.sh"), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    archive = out / "reslab-results-smoke-selu_ablation_fashion_mnist.tar.gz"
    assert archive.is_file() and archive.stat().st_size <= 16 * (1 << 20)

    home = tmp_path / "home_results"
    assert cli.main(["import", str(archive), "--results", str(home)]) == 0
    report = check.check_results(home, data_root=shared_data).set_index("folder")
    row = report.loc["smoke/selu_ablation_fashion_mnist"]
    if dirty:  # the bundle holds HEAD: uncommitted code here makes it stale, and nothing else may
        assert row["status"] in (check.UP_TO_DATE, check.STALE) and not row["files_changed"]
        assert not row["data_changed"]
    else:
        assert row["status"] == check.UP_TO_DATE, row["detail"]
    folder = home / "smoke" / "selu_ablation_fashion_mnist"
    assert json.loads((folder / "manifest.json").read_text())["git_commit"] == sha
    runs = list((home / "_runs" / "smoke" / "selu_ablation_fashion_mnist").glob("*/result.json"))
    assert len(runs) == 1 and (runs[0].parent / "history.csv").is_file()


def test_cifar10_travels_with_table5_only_when_its_source_run_does_not():
    paper = resolve_profile("paper")
    seeds = drstn.TABLE5_RECIPES["paper"].seeds
    assert bundle.datasets_to_train(["drstn_table5_transfer"], paper, []) == {"cifar10": ["drstn_table5_transfer"]}
    copies = [bundle.RunCopy(f"paper/{drstn.TABLE4}/v5-s{s}", drstn.TABLE4, drstn.TRANSFER_MODEL, s,
                             ["drstn_table5_transfer"], "why") for s in seeds]
    assert bundle.datasets_to_train(["drstn_table5_transfer"], paper, copies) == {}
    assert bundle.datasets_to_train(["drstn_table5_transfer"], paper, copies[:-1]) == {"cifar10": ["drstn_table5_transfer"]}
    # With Table 4 in the same bundle, it trains V5 there anyway, on the CIFAR-10 it carries.
    assert bundle.datasets_to_train(["drstn_table4_cifar10", "drstn_table5_transfer"], paper, []) == {}


def test_the_checkpoints_table4_keeps_are_those_later_notebooks_read():
    """Two views of one fact: Table 4 keeps the checkpoints of drstn.READ_LATER, and the catalog says
    which notebooks read which Table 4 runs (what reslab export carries home)."""
    read = {model for (table, model) in catalog.read_later() if table == drstn.TABLE4}
    table4_models = {m for _, m in drstn.TABLE4_ROWS}
    assert read and read == drstn.READ_LATER & table4_models


def test_the_bundle_carries_the_record_of_its_notebooks_finished_runs(tmp_path):
    """A run finished before (here, or in an earlier GPU slice) travels as its record, so run.sh
    puts it in the record there and the slice does not train it again."""
    from reslab.app.bundle.gather import _copy_record
    from reslab.profiles import resolve_profile

    record = tmp_path / "_finished"
    for rel in ("paper/selu_ablation_fashion_mnist/ResNet34-s0-abc", "paper/selu_ablation_fashion_mnist/ResNet34-s1-def",
                "paper/drstn_table4_cifar10/drstn_v5-s0-123", "smoke/selu_ablation_fashion_mnist/ResNet34-s0-999"):
        (record / rel).mkdir(parents=True)
        (record / rel / "result.json").write_text("{}")
    copied = _copy_record(["selu_ablation_fashion_mnist"], resolve_profile("paper"), record, tmp_path / "b" / "record")
    assert copied == {"selu_ablation_fashion_mnist": 2}
    assert sorted(p.relative_to(tmp_path / "b" / "record").as_posix()
                  for p in (tmp_path / "b" / "record").rglob("result.json")) == [
        "paper/selu_ablation_fashion_mnist/ResNet34-s0-abc/result.json",
        "paper/selu_ablation_fashion_mnist/ResNet34-s1-def/result.json"]
