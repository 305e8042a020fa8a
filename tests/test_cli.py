"""The `cxr` command line: synth, and clear failures."""

import glob

import pytest

from cxr import cli


def test_synth(tmp_path, capsys):
  assert cli.main(["synth", str(tmp_path), "--n", "12", "--size", "48"]) == 0
  assert len(glob.glob(str(tmp_path / "*" / "*" / "*.jpeg"))) == 12
  assert "wrote 12 images" in capsys.readouterr().out


def test_run_on_a_missing_folder_fails_clearly(tmp_path, capsys):
  code = cli.main(["run", "--data", str(tmp_path / "missing"), "--task",
                   "binary", "--output", str(tmp_path / "out")])
  assert code == 1
  err = capsys.readouterr().err
  assert "The binary pipeline run failed" in err
  assert "data folder not found" in err


def test_run_on_an_unknown_layout_fails_clearly(tmp_path, capsys):
  (tmp_path / "photos").mkdir()
  code = cli.main(["run", "--data", str(tmp_path), "--task", "binary",
                   "--output", str(tmp_path / "out")])
  assert code == 1
  assert "no known data set layout" in capsys.readouterr().err


def test_models_table(capsys):
  assert cli.main(["models", "--task", "multiclass", "--image-size",
                   "64"]) == 0
  rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
  assert [r[0] for r in rows] == ["cnn", "cnn_aug", "vgg16", "mobilenet_v2",
                                  "resnet50_v2", "resnet_small"]
  for name, task, total, trainable in rows:
    assert task == "multiclass"
    total, trainable = int(total.replace(",", "")), int(
        trainable.replace(",", ""))
    assert 0 < trainable <= total
    # Frozen bases, and resnet_small's batch-norm statistics, do not train.
    assert (trainable < total) == (name not in ("cnn", "cnn_aug"))


def test_unknown_or_repeated_models_are_refused(capsys):
  for models in ("cnn,foo", "cnn,cnn", ","):
    with pytest.raises(SystemExit) as raised:
      cli.main(["run", "--data", "d", "--task", "binary", "--output", "o",
                "--models", models])
    assert raised.value.code == 2
    assert "expected distinct names from cnn,cnn_aug" in capsys.readouterr().err


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_prints_its_help(command, capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main([command, "--help"])
  assert exit_.value.code == 0
  assert capsys.readouterr().out.startswith(f"usage: cxr {command}")
