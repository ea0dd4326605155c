"""absl flags generated from the config dataclasses; parsed flags -> `Config`.

Nothing here holds a default: every flag's default and help come from the field in
`config.py`. Only `run.py` calls `define_flags` and reads the parsed values.
"""

import dataclasses
import enum
import typing

from absl import flags

from supcon_tf import config as config_lib
from supcon_tf import validation


def _leaf_fields():
  """Yields (section, field, flag name, default) for every leaf of `Config`."""
  defaults = config_lib.Config()
  for section in config_lib.SECTIONS:
    section_value = getattr(defaults, section)
    for f in dataclasses.fields(section_value):
      yield (section, f, config_lib.flag_name(section, f.name),
             getattr(section_value, f.name))


def _field_kind(f):
  t = f.type
  if isinstance(t, type) and issubclass(t, enum.Enum):
    return "enum"
  if typing.get_origin(t) is tuple:
    return "list"
  return {bool: "bool", int: "int", float: "float", str: "str"}[t]


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one flag per config leaf on `flag_values` (idempotent).

  Stage flags get a "[stage_N]" prefix on their help. Enum flags are
  case-insensitive; tuple fields become list flags.

  Args:
    flag_values: where to define them; flags already there are kept as they are.
  """
  for section, f, name, default in _leaf_fields():
    if name in flag_values:
      continue
    help_text = f.metadata.get("help", f.name)
    if section in config_lib.STAGE_SECTIONS:
      help_text = f"[{section}] {help_text}"
    kind = _field_kind(f)
    if kind == "enum":
      flags.DEFINE_enum_class(name, default, f.type, help_text,
                              case_sensitive=False, flag_values=flag_values)
    elif kind == "list":
      flags.DEFINE_list(name, [str(v) for v in default], help_text,
                        flag_values=flag_values)
    elif kind == "bool":
      flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
    elif kind == "int":
      flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
    elif kind == "float":
      flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
    else:
      flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def _parse_list(f, name, values):
  args = typing.get_args(f.type)
  elem_type = args[0]
  try:
    parsed = tuple(elem_type(v) for v in values)
  except ValueError:
    raise config_lib.ConfigError(
        f"--{name} must be a comma-separated list of {elem_type.__name__}s, "
        f"got {','.join(values)!r}") from None
  if len(args) == 2 and args[1] is not Ellipsis and len(parsed) != len(args):
    raise config_lib.ConfigError(f"--{name} needs exactly {len(args)} values, got "
                                 f"{','.join(values)!r}")
  return parsed


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> config_lib.Config:
  """Builds the `Config` from parsed flags.

  --image_dir without --dataset sets the dataset to `IMAGE_FOLDER`; --tpu with
  the default strategy sets --strategy=tpu. The result is validated.

  Args:
    flag_values: parsed flags, defined by `define_flags`.

  Returns:
    The validated `Config`.

  Raises:
    ConfigError: a list flag that does not parse or has the wrong length, or a
      value `validation.validate` rejects.
  """
  sections = {s: {} for s in config_lib.SECTIONS}
  for section, f, name, _ in _leaf_fields():
    value = flag_values[name].value
    if _field_kind(f) == "list":
      value = _parse_list(f, name, value)
    sections[section][f.name] = value
  defaults = config_lib.Config()
  if sections["data"]["image_dir"] and not flag_values["dataset"].present:
    sections["data"]["dataset"] = config_lib.IMAGE_FOLDER  # --image_dir names the source
  built = {s: type(getattr(defaults, s))(**sections[s]) for s in config_lib.SECTIONS}
  cfg = config_lib.Config(**built)
  if cfg.runtime.tpu and cfg.runtime.strategy == config_lib.StrategyType.DEFAULT:
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(
        cfg.runtime, strategy=config_lib.StrategyType.TPU))
  validation.validate(cfg)
  return cfg


def given_fields(flag_values: flags.FlagValues = flags.FLAGS) -> frozenset:
  """The config leaves the command line (or a flagfile) sets, as dotted names.

  --image_dir also counts as giving `data.dataset` (it sets it, see
  `config_from_flags`).

  Args:
    flag_values: parsed flags, defined by `define_flags`.

  Returns:
    E.g. {"runtime.mode", "stage_1.steps"}.
  """
  given = {f"{section}.{f.name}" for section, f, name, _ in _leaf_fields()
           if flag_values[name].present}
  if "data.image_dir" in given and flag_values["image_dir"].value:
    given.add("data.dataset")
  return frozenset(given)
