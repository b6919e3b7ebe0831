"""A `Recipe` wired into `model.fit`, evaluated and exported: what the command line calls.

- `building`: the recipe's classifier, optimizer, attacks and compiled
  `AdversarialModel`; classifiers loaded from a run, a `.keras` file or an export.
- `training`: `train(recipe, output_dir)`: the run directory (`tfrobust.run`),
  the training data (stored adversarial and generated parts), callbacks,
  checkpoints and resume.
- `evaluation`: `evaluate(classifier, recipe)` on the test split, `export`
  with the figures as metadata, `export_model` (a run, .keras file or
  exported version, evaluated and exported) and `rebuild_classifier`.
- `studies`: `landscape_study` (loss landscape and sharpness around a model)
  and `generated_data_study` (complementarity and coverage of generated sets).

Every function takes a `Recipe` (or what a run holds) and returns results, so
a Python user reaches everything the command line does.
"""

from tfrobust.experiment.building import (ExportedClassifier, build_classifier, build_model, build_optimizer,
                                          eval_attacks, load_classifier, training_attack)
from tfrobust.experiment.evaluation import (ExportResult, carried_metadata, evaluate, export, export_metadata,
                                            export_model, rebuild_classifier)
from tfrobust.experiment.studies import generated_data_study, landscape_study
from tfrobust.experiment.training import (GENERATED_DIR, RESUMABLE_CHANGES, STATIC_SET_DIR, TrainResult,
                                          check_resumable, clear_run, generated_training_set, resume_position,
                                          resume_state, static_training_set, train)
from tfrobust.run import CHECKPOINT_DIR

__all__ = ["CHECKPOINT_DIR", "ExportResult", "ExportedClassifier", "GENERATED_DIR", "RESUMABLE_CHANGES", "STATIC_SET_DIR",
           "TrainResult", "build_classifier", "build_model", "build_optimizer", "carried_metadata",
           "check_resumable", "clear_run", "eval_attacks", "evaluate", "export", "export_metadata", "export_model",
           "generated_data_study", "generated_training_set", "landscape_study", "load_classifier",
           "rebuild_classifier", "resume_position", "resume_state", "static_training_set", "train",
           "training_attack"]
