"""20 path-traversal probes against every input that takes a name: model, LoRA, ControlNet, preset, wildcard.

Each folder holds one real file, and next to the folder lies a 'secret' of the right type that a probe tries to
reach with `../`, absolute paths, Windows paths, NUL bytes, links out of the folder and so on. Every probe must
be refused with a RequestError (the app's "your input is wrong" error), and the real file must still resolve.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ldm_ui.requests import RequestError
from ldm_ui.safe_paths import UnsafeNameError, list_inside, resolve_inside

PROBES = [
    "../secret",
    "../../secret",
    "sub/../../secret",
    "./../secret",
    "..",
    "{outside}/secret",  # absolute path to the secret
    "/etc/passwd",
    "~/secret",
    "..\\secret",
    "C:\\Windows\\win.ini",
    "C:secret",
    "\\\\server\\share\\secret",
    "secret\x00",
    "real\x00/../../secret",
    "link-out",  # a file link inside the folder that points at the secret
    "linkdir/secret",  # a folder link inside the folder that points outside
    "%2e%2e%2fsecret",
    "file:///etc/passwd",
    "\n../secret",
    "a" * 300,
]


def make_tree(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    """folder/real<suffix>, outside/secret<suffix>, folder/link-out<suffix> -> secret, folder/linkdir -> outside."""
    folder, outside = tmp_path / "folder", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "sub").mkdir()
    (folder / f"real{suffix}").write_text("real")
    (outside / f"secret{suffix}").write_text("secret")
    os.symlink(outside / f"secret{suffix}", folder / f"link-out{suffix}")
    os.symlink(outside, folder / "linkdir", target_is_directory=True)
    return folder, outside


def probes_for(outside: Path, suffix: str = "") -> list[str]:
    names = [p.replace("{outside}", str(outside)) for p in PROBES]
    return [n + suffix if suffix and n.endswith(("secret", "link-out")) else n for n in names]


@pytest.mark.parametrize("kind,suffixes", [("LoRA", (".safetensors",)), ("ControlNet", (".safetensors",)),
                                           ("preset", (".json",)), ("wildcard", (".txt",))])
def test_resolve_inside_refuses_every_probe(tmp_path, kind, suffixes):
    folder, outside = make_tree(tmp_path, suffixes[0])
    assert resolve_inside(folder, "real", suffixes, kind=kind) == (folder / f"real{suffixes[0]}").resolve()
    for probe in probes_for(outside) + probes_for(outside, suffixes[0]):
        with pytest.raises(UnsafeNameError) as refused:
            resolve_inside(folder, probe, suffixes, kind=kind)
        assert kind in str(refused.value), (probe, str(refused.value))
    assert list_inside(folder, suffixes) == [f"real{suffixes[0]}"]  # the links out are not offered either


def test_resolve_inside_messages_say_why(tmp_path):
    folder, outside = make_tree(tmp_path, ".txt")
    cases = {"../secret": "'..'", "/etc/passwd": "absolute path", "secret\x00": "NUL",
             "link-out": "points outside", "missing": "was not found", "real.exe": "not found"}
    for probe, words in cases.items():
        with pytest.raises(UnsafeNameError, match=words):
            resolve_inside(folder, probe, (".txt",), kind="wildcard")


def test_model_names_are_refused_through_the_engine(tmp_path, models_dir):
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine, JobFailed
    from ldm_ui.requests import Txt2ImgRequest

    root = tmp_path / "models"
    checkpoints = root / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    (root / "diffusers").mkdir()
    os.symlink(models_dir / "diffusers" / "tiny-sd", root / "diffusers" / "tiny-sd")  # a linked model folder...
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}      ")
    os.symlink(outside / "secret.safetensors", checkpoints / "link-out.safetensors")
    os.symlink(outside, checkpoints / "linkdir", target_is_directory=True)
    config = AppConfig(models_dir=root, outputs_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    engine = Engine(config).start()
    try:
        names = engine.models.model_names()
        assert "link-out.safetensors" not in names and not any(n.startswith("linkdir") for n in names)
        # ...that points outside models/diffusers is not offered either
        assert "tiny-sd" not in names
        os.chdir(tmp_path)  # "outside/secret.safetensors" now exists relative to the working directory
        try:
            probes = probes_for(outside, ".safetensors") + ["outside/secret.safetensors", "outside"]
            for probe in probes:
                try:
                    job = engine.submit(Txt2ImgRequest(prompt="x", model=probe, steps=1))
                except RequestError:
                    continue
                # only a name shaped like a hub id ("org/name") gets this far: it is looked up in the hub cache,
                # never as a path, and fails offline
                assert "/" in probe and not os.path.exists(probe), probe
                with pytest.raises(JobFailed, match="not downloaded"):
                    job.wait(timeout=60)
        finally:
            os.chdir(Path(__file__).resolve().parent.parent)
        assert engine.models.current is None
    finally:
        engine.shutdown()


def test_lora_names_are_refused(tmp_path):
    lora = pytest.importorskip("ldm_ui.engine.lora")
    from ldm_ui.config import AppConfig

    root = tmp_path / "models"
    folder, outside = make_tree(tmp_path, ".safetensors")
    root.mkdir()
    os.symlink(folder, root / "Lora", target_is_directory=True)  # a linked root folder is fine
    config = AppConfig(models_dir=root, outputs_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert lora.find_lora(config, "real").path.name == "real.safetensors"
    for probe in probes_for(outside) + probes_for(outside, ".safetensors"):
        with pytest.raises(RequestError):
            lora.find_lora(config, probe)
    assert [e.name for e in lora.list_loras(config)] == ["real"]


def test_preset_names_are_refused(tmp_path):
    presets = pytest.importorskip("ldm_ui.presets")
    folder, outside = make_tree(tmp_path, ".json")
    (folder / "real.json").write_text('{"steps": 3}')
    (outside / "secret.json").write_text('{"steps": 4}')
    library = presets.PresetLibrary.load(folder)
    assert "real" in library.names()
    assert "link-out" not in library.names(), "a preset link that points outside the presets folder was read"
    for probe in probes_for(outside) + probes_for(outside, ".json"):
        with pytest.raises(RequestError):
            library.get(probe)
        if probe not in ("link-out", "link-out.json"):
            with pytest.raises(RequestError):
                presets.check_preset_name(probe)


def test_wildcard_names_are_refused(tmp_path, engine):
    extensions = pytest.importorskip("ldm_ui.extensions")
    from ldm_ui.config import PROJECT_ROOT

    if not (PROJECT_ROOT / "extensions" / "wildcards").is_dir():
        pytest.skip("the wildcards extension is not in extensions/")
    engine.config.extensions_dir = PROJECT_ROOT / "extensions"
    before = len(engine.prompt_transforms)
    extensions.ExtensionManager(engine.config, engine).load_all()
    transforms = engine.prompt_transforms[before:]
    assert transforms, "the wildcards extension registered no prompt transform"
    expand = transforms[0]
    assert "__color__" not in expand("a __color__ circle", 1)
    outside = tmp_path
    (outside / "secret.txt").write_text("SECRET")
    for probe in probes_for(outside):
        if "_" in probe or any(ch.isspace() for ch in probe):
            continue  # cannot be written as one __name__ token
        with pytest.raises(RequestError):
            expand(f"a __{probe}__ circle", 1)


def test_controlnet_names_are_refused(tmp_path):
    controlnet = pytest.importorskip("ldm_ui.engine.controlnet")
    from ldm_ui.config import AppConfig

    root = tmp_path / "models"
    folder, outside = make_tree(tmp_path, ".safetensors")
    root.mkdir()
    os.symlink(folder, root / "ControlNet", target_is_directory=True)
    config = AppConfig(models_dir=root, outputs_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert controlnet.resolve_controlnet(config, "real").location.endswith("real.safetensors")
    os.chdir(tmp_path)  # "outside/secret.safetensors" exists relative to the working directory
    try:
        for probe in probes_for(outside) + probes_for(outside, ".safetensors") + ["outside/secret.safetensors"]:
            try:
                entry = controlnet.resolve_controlnet(config, probe)
            except RequestError:
                continue
            assert entry.kind == "hub" and "/" in probe and not os.path.exists(probe), (probe, entry)
    finally:
        os.chdir(Path(__file__).resolve().parent.parent)
    assert [e.name for e in controlnet.list_controlnets(config)] == ["real.safetensors"]
