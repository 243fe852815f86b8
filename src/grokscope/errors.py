"""Error types the CLI turns into one-line messages with exit code 2."""


class GrokscopeError(Exception):
    """Base for errors caused by user input or files on disk (never by a bug)."""


class ConfigError(GrokscopeError, ValueError):
    """A bad user-supplied value; the message is one line naming the value and why."""


class StoreError(GrokscopeError):
    """A run directory or file that cannot be used: corrupt, truncated, or holding another config."""


class RecordExistsError(StoreError):
    """A monitor asked to start a new record in a folder that already holds one (continue it from a checkpoint's
    step with `start_step`, or replace it with `overwrite=True`); framework callbacks say so and train on."""


class TooLittleData(StoreError, ValueError):
    """A run holds too little for an analysis (a 1-step run has one snapshot, PCA needs two); the message says
    what is missing, and callers that summarise several analyses report it and carry on."""


class ModelChangedError(GrokscopeError, RuntimeError):
    """A measurement left the user's model holding other tensors than before (a parameter or buffer replaced, its
    storage swapped or its values written): the monitor restored what it could and stops the run instead of
    letting it train on silently."""


class NotApplicable(GrokscopeError, ValueError):
    """An analysis asked of a run or task it does not describe (progress measures of a task that is not a
    group operation, or of a model without a token embedding); the message says which and why."""
