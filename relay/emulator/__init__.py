"""A local Transfer Family endpoint: `SendWorkflowStepState`, and `ListExecutions` and
`DescribeExecution` from its own executions (`executions`); protocol, operations, answers, state,
faults, admin.

It speaks the real AWS JSON 1.1 wire protocol, so an unmodified botocore/aiobotocore `transfer`
client pointed at `endpoint_url` gets the real results and error shapes (DESIGN §1, §7, §11).
"""

from relay.emulator.app import create_app
from relay.emulator.client import EmulatorAdmin, EmulatorAdminError
from relay.emulator.faults import FailureKind, Faults
from relay.emulator.protocol import ErrorForm, GatewayBody
from relay.emulator.server import RunningEmulator, run_emulator, serve
from relay.emulator.state import CallRecord, EmulatorState

__all__ = [
    "CallRecord",
    "EmulatorAdmin",
    "EmulatorAdminError",
    "EmulatorState",
    "ErrorForm",
    "FailureKind",
    "Faults",
    "GatewayBody",
    "RunningEmulator",
    "create_app",
    "run_emulator",
    "serve",
]
