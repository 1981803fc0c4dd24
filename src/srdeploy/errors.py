"""User-facing errors: every CLI turns these into one line on stderr and exit code 2."""

#: the running command's name (set by cli_util.run_cli), for messages printed outside its error path
PROGRAM = "srdeploy"


class SrDeployError(Exception):
    """Bad input or an unmet precondition the user can fix (exit code 2)."""

    exit_code = 2


class ParityError(SrDeployError):
    """An exported artifact does not compute what PyTorch computes (exit code 1)."""

    exit_code = 1
