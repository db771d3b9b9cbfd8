"""The AWS session every adapter starts from: the standard chain, plus `AWS_REGION`.

botocore reads the region from `AWS_DEFAULT_REGION` only; ECS, Lambda and the other SDKs set
`AWS_REGION`, which DESIGN §5 promises to honour, so it fills the gap when nothing else set one.
"""

import os
from collections.abc import Mapping

from aiobotocore.session import AioSession, get_session


def new_session(env: Mapping[str, str] | None = None) -> AioSession:
    """An aiobotocore session from the standard chain, with `AWS_REGION` as a fallback region."""
    env = os.environ if env is None else env
    session = get_session()
    region = env.get("AWS_REGION")
    if region and not session.get_config_variable("region"):
        session.set_config_variable("region", region)
    return session
