"""The AWS session every adapter starts from: the standard chain, plus `AWS_REGION`.

botocore reads the region from `AWS_DEFAULT_REGION` only; ECS, Lambda and the other SDKs set
`AWS_REGION`, which DESIGN §5 promises to honour, so it fills the gap when nothing else set one.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping

from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from relay.errors import ConfigError, RelayError


def new_session(env: Mapping[str, str] | None = None) -> AioSession:
    """An aiobotocore session from the standard chain, with `AWS_REGION` as a fallback region."""
    env = os.environ if env is None else env
    session = get_session()
    region = env.get("AWS_REGION")
    if region and not session.get_config_variable("region"):
        session.set_config_variable("region", region)
    return session


@contextlib.contextmanager
def aws_errors() -> Iterator[None]:
    """What the AWS chain raises past every adapter, as relay's errors: no region or no
    credentials is configuration (exit 2); any other AWS failure is the job failing (exit 1)."""
    try:
        yield
    except NoRegionError:
        raise ConfigError("no AWS region: set AWS_REGION") from None
    except NoCredentialsError:
        raise ConfigError("no AWS credentials found in the standard chain") from None
    except (ClientError, BotoCoreError) as exc:
        raise RelayError(str(exc)) from None
