"""Before a split deploy: does the execution role allow sagemaker:InvokeEndpoint on the LLM endpoint?

Without it the front endpoint deploys, reports InService, and then answers every question 503. The check
reads the role's inline and attached policies and evaluates their statements for that one action and
resource (Allow and Deny, `*` and `?` wildcards in actions and resources). Conditions, permission
boundaries and organisation policies are not evaluated: a statement with a condition counts as granting.
SKIP_ROLE_CHECK=1 skips the check; when the operator may not read the role, it warns and goes on.
"""

from __future__ import annotations

import json
import logging
from fnmatch import fnmatchcase
from urllib.parse import unquote

from .errors import AccessDenied, ConfigError
from .session import Aws

log = logging.getLogger(__name__)

ACTION = "sagemaker:InvokeEndpoint"


def endpoint_arn(role_arn: str, region: str, endpoint: str) -> str:
    """The endpoint's ARN, in the role's partition and account (SageMaker ARNs use lower case names)."""
    parts = role_arn.split(":")
    if len(parts) < 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise ConfigError(f"ROLE_ARN={role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return f"arn:{parts[1]}:sagemaker:{region}:{parts[4]}:endpoint/{endpoint.lower()}"


def statement_for(resource: str) -> str:
    """The policy statement to add, as JSON."""
    return json.dumps({"Effect": "Allow", "Action": ACTION, "Resource": resource})


def check_invoke_permission(aws: Aws, role_arn: str, endpoint: str) -> None:
    """Refuse (exit 2) when no policy of the role allows invoking `endpoint`, or one denies it."""
    resource = endpoint_arn(role_arn, aws.region, endpoint)
    if aws.config.flag("SKIP_ROLE_CHECK"):
        log.info("SKIP_ROLE_CHECK=1: not checking that %s may invoke %s", role_arn, resource)
        return
    try:
        documents = role_policies(aws, role_arn.rsplit("/", 1)[1])
    except AccessDenied as exc:
        log.warning(
            "cannot read the policies of %s (%s); make sure it allows %s on %s", role_arn, exc, ACTION, resource
        )
        return
    verdicts = [effect for document in documents for effect in matching_effects(document, ACTION, resource)]
    if "Deny" in verdicts or "Allow" not in verdicts:
        why = "a policy denies" if "Deny" in verdicts else "no policy allows"
        raise ConfigError(
            f"the execution role {role_arn}: {why} {ACTION} on {resource}, so the front could not call "
            f"the LLM endpoint. Add this statement to its policy: {statement_for(resource)} "
            "(or SKIP_ROLE_CHECK=1 if a condition or boundary the check cannot read allows it)"
        )
    log.info("execution role may invoke %s", resource)


def role_policies(aws: Aws, role: str) -> list[dict]:
    """Every policy document of the role: inline ones and the default version of each attached one."""
    iam, documents = aws.iam, []
    # One page each: IAM allows 10 attached policies per role, and inline ones share a 10 KB quota.
    inline = aws.call(f"list the inline policies of role {role}", iam.list_role_policies, RoleName=role, MaxItems=1000)
    for name in inline["PolicyNames"]:
        documents.append(
            aws.call(f"read policy {name} of role {role}", iam.get_role_policy, RoleName=role, PolicyName=name)[
                "PolicyDocument"
            ]
        )
    attached = aws.call(
        f"list the policies of role {role}", iam.list_attached_role_policies, RoleName=role, MaxItems=1000
    )
    for policy in attached["AttachedPolicies"]:
        arn = policy["PolicyArn"]
        version = aws.call(f"read policy {arn}", iam.get_policy, PolicyArn=arn)["Policy"]["DefaultVersionId"]
        documents.append(
            aws.call(f"read policy {arn}", iam.get_policy_version, PolicyArn=arn, VersionId=version)["PolicyVersion"][
                "Document"
            ]
        )
    return [json.loads(unquote(doc)) if isinstance(doc, str) else doc for doc in documents]


def matching_effects(document: dict, action: str, resource: str) -> list[str]:
    """The Effect of each statement of `document` that covers `action` on `resource`."""
    statements = document.get("Statement", [])
    effects = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Action" not in statement or "Resource" not in statement:
            continue  # NotAction / NotResource statements are not evaluated
        if _matches(statement["Action"], action, case=False) and _matches(statement["Resource"], resource, case=True):
            effects.append(statement.get("Effect", ""))
    return effects


def _matches(patterns, value: str, case: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not case:
        value, patterns = value.lower(), [pattern.lower() for pattern in patterns]
    return any(fnmatchcase(value, pattern) for pattern in patterns)
