"""Settings are defined once: the command line and the Trainer's
custom_config are derived from the dataclasses and checked on the way in."""

import argparse
import dataclasses
import json

import pytest

from schema import contract
from schema import settings


def _parser(*classes):
  parser = argparse.ArgumentParser()
  for cls in classes:
    settings.add_arguments(parser, cls)
  return parser


def test_command_line_defaults_are_the_dataclass_defaults():
  classes = (settings.TrainingSettings, settings.GateSettings,
             settings.RunSettings, settings.ServeSettings)
  args = _parser(*classes).parse_args([])
  for cls in classes:
    assert settings.from_args(cls, args) == cls()


def test_a_new_field_is_a_new_option_with_its_help():
  @dataclasses.dataclass(frozen=True)
  class Extra:
    label_smoothing: float = settings.setting(0.0, "smooth the labels")
    warm_start: bool = settings.setting(False, "start from the last model")

  parser = _parser(Extra)
  assert "smooth the labels" in parser.format_help()
  args = parser.parse_args(["--label-smoothing", "0.1", "--warm-start"])
  assert settings.from_args(Extra, args) == Extra(0.1, True)


def test_flags_parse_into_typed_settings():
  args = _parser(settings.TrainingSettings, settings.RunSettings).parse_args(
      ["--models", "cnn, vgg16", "--learning-rate", "2e-4", "--no-cache",
       "--keep-last-epoch", "--epochs", "3"])
  run = settings.from_args(settings.RunSettings, args)
  training = settings.from_args(settings.TrainingSettings, args)
  assert run.models == ("cnn", "vgg16") and not run.enable_cache
  assert training.learning_rate == 2e-4 and training.epochs == 3
  assert not training.restore_best_epoch


def test_bad_values_are_refused_with_the_setting_named():
  with pytest.raises(ValueError, match="epochs"):
    settings.TrainingSettings(epochs=0)
  with pytest.raises(ValueError, match="eval_percent"):
    settings.RunSettings(eval_percent=60)
  with pytest.raises(ValueError, match="expected distinct names"):
    settings.RunSettings(models=("cnn", "cnn"))
  with pytest.raises(ValueError, match="min_auc"):
    settings.GateSettings(min_auc=-0.5)
  with pytest.raises(ValueError, match="TLS"):
    settings.ServeSettings(tls_cert="cert.pem")
  with pytest.raises(SystemExit):  # argparse: not a known model
    _parser(settings.RunSettings).parse_args(["--models", "alexnet"])


def test_trainer_config_survives_the_json_round_trip():
  training = settings.TrainingSettings(epochs=3, learning_rate=1e-4,
                                       xla=True, mixed_precision="bfloat16")
  sent = json.loads(json.dumps(settings.trainer_custom_config(
      contract.MULTICLASS, contract.VGG16, training)))
  config = settings.TrainerConfig.from_custom_config(sent)
  assert config == settings.TrainerConfig(contract.MULTICLASS,
                                          contract.VGG16, training)


@pytest.mark.parametrize("change, named", [
    ({"epoch": 3}, "epoch"),  # misspelt
    ({"epochs": "3"}, "epochs"),  # a string where a number belongs
    ({"xla": 1}, "xla"),  # a number where a bool belongs
    ({"task": "triage"}, "task"),
    ({"model": "alexnet"}, "alexnet"),
])
def test_trainer_config_refuses_what_it_does_not_know(change, named):
  config = settings.trainer_custom_config(
      contract.BINARY, contract.CNN, settings.TrainingSettings())
  config.update(change)
  with pytest.raises(ValueError, match=named):
    settings.TrainerConfig.from_custom_config(config)


def test_recipe_settings_default_to_the_models_own_and_parse():
  training = settings.TrainingSettings()
  # None / "": the model's recipe decides (components/models.py).
  assert (training.optimizer, training.learning_rate, training.lr_schedule,
          training.warmup_epochs, training.label_smoothing,
          training.mixed_precision) == ("", None, "", None, None, "")
  args = _parser(settings.TrainingSettings).parse_args(
      ["--optimizer", "adam", "--lr-schedule", "cosine", "--warmup-epochs",
       "0", "--label-smoothing", "0.1", "--mixed-precision", "float32"])
  training = settings.from_args(settings.TrainingSettings, args)
  assert (training.optimizer, training.lr_schedule, training.warmup_epochs,
          training.label_smoothing, training.mixed_precision) == (
              "adam", "cosine", 0, 0.1, "float32")
  for bad in ({"optimizer": "sgd"}, {"lr_schedule": "step"},
              {"warmup_epochs": -1}, {"label_smoothing": 1.0},
              {"learning_rate": 0.0}):
    with pytest.raises(ValueError, match=next(iter(bad))):
      settings.TrainingSettings(**bad)


def test_the_default_run_trains_the_thesiss_five_and_takes_resnet_small():
  assert settings.RunSettings().models == contract.THESIS_MODELS
  assert contract.RESNET_SMALL not in contract.THESIS_MODELS
  assert settings.RunSettings(models=("resnet_small",)).models == (
      "resnet_small",)
