"""Who is acting: a person from the policy, the door they came through, and how that door
authenticated them.

The service API's doors prove identity below anything a caller can assert: the kernel's peer
credentials on the Unix socket, a hashed API token over HTTP, Slack's request signature. A
name the caller merely states (`acp ... --as bob`) counts only where the policy allows
impersonation, and the record says so.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.errors import ImpersonationRefused, PolicyDenied, Unauthenticated, UnknownPerson
from runtime.policy import Door

if TYPE_CHECKING:
    from runtime.policy.schema import Policy
    from runtime.tokens import TokenInfo


@dataclass(frozen=True)
class Actor:
    """A person from the policy, the door and identity they came through, and how the door
    knows (empty for trusted in-process callers such as tests and tools)."""

    person: str
    door: Door
    identity: str
    via: str = ""

    @property
    def label(self) -> str:
        """How events name the actor: `alice via cli socket uid 1000`."""
        if self.via:
            return f"{self.person} via {self.via}"
        return f"{self.person} ({self.door}:{self.identity})"


def os_user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


OPERATOR = "operator"


def socket_actor(
    policy: Policy, uid: int, as_user: str | None = None, *, reading: bool = False
) -> Actor:
    """The caller on the Unix socket, as the kernel reports its uid (SO_PEERCRED).

    The uid's user name, or the uid itself, is looked up in `identities.cli`. `--as` naming
    someone else is honoured only when the policy allows impersonation. Root and the service's
    own user, when they are nobody in the policy, may still read (`reading`): they can read
    the database file itself, so refusing them would protect nothing; they act as nobody."""
    name = os_user(uid)
    shown = f"{name} (uid {uid})" if name else f"uid {uid}"
    person = None
    for candidate in (name, str(uid), f"uid:{uid}"):
        if candidate and (person := policy.person_for("cli", candidate)):
            break
    if as_user and as_user != person:
        if not policy.authentication.impersonation:
            raise ImpersonationRefused(
                f"--as {as_user} refused: you are {shown}, "
                f"{'who is ' + person if person else 'nobody in the policy'}, and the policy "
                "does not allow acting as someone else",
                hint="drop --as (you act as yourself), or call the API with a token of "
                f"{as_user}'s (ACP_URL and ACP_TOKEN); --as is for local demos only "
                "(authentication.impersonation: true)",
            )
        target = policy.person_for("cli", as_user)
        if target is None:
            raise _unknown(policy, as_user)
        _not_a_service(policy, target, "--as")
        return Actor(
            target, "cli", as_user, f"cli socket uid {uid} as --as {as_user} (impersonation)"
        )
    if person is None and reading and uid in (0, os.geteuid()):
        return Actor(OPERATOR, "cli", name or str(uid), f"cli socket uid {uid} (operator, read)")
    if person is None:
        raise UnknownPerson(
            f"terminal user {shown} is not a person in the policy",
            hint="add the user name or the uid under people.<name>.identities.cli "
            "(or, only for a local demo, allow impersonation and pass --as NAME)",
        )
    _not_a_service(policy, person, "the terminal")
    return Actor(person, "cli", name or str(uid), f"cli socket uid {uid}")


def token_actor(policy: Policy, token: TokenInfo, as_user: str | None = None) -> Actor:
    """The caller holding an API token: the token's person, never anyone else."""
    if as_user and as_user != token.person:
        raise ImpersonationRefused(
            f"--as {as_user} refused: the API token {token.short} is {token.person}'s",
            hint="drop --as, or use a token of that person",
        )
    if token.person not in policy.people:
        raise Unauthenticated(
            f"the API token {token.short} belongs to {token.person}, who is no longer in the "
            "policy",
            hint="revoke it with `acp token revoke` and create one for a current person",
        )
    return Actor(token.person, "cli", token.short, f"token {token.short}")


def slack_actor(policy: Policy, user_id: str, *, how: str = "slack signature") -> Actor:
    """A Slack user whose request Slack signed (or sent over the app's own Socket Mode)."""
    person = policy.person_for("slack", user_id)
    if person is None:
        raise _unknown(policy, user_id, door="slack")
    _not_a_service(policy, person, "Slack")
    return Actor(person, "slack", user_id, f"{how} {user_id}")


def console_actor(policy: Policy, logins: list[str], *, how: str) -> Actor:
    """A person signed in to the web console. `logins` are what the sign-in proved, most
    specific first (the IdP's `issuer#subject`, the subject, a verified email); the first
    one found in `identities.console` decides. `how` is how the console knows: "oidc
    https://idp.example (sub 1234)", "slack oidc U0BOB", or "local demo sign-in"."""
    for login in logins:
        if login and (person := policy.person_for("console", login)):
            _not_a_service(policy, person, "the console")
            return Actor(person, "console", login, f"console {how}")
    shown = next((login for login in logins if login), "(no identity)")
    raise UnknownPerson(
        f"console sign-in '{shown}' is not a person in the policy",
        hint="add the email or the subject under people.<name>.identities.console",
    )


def slack_login_actor(policy: Policy, user_id: str, *, how: str) -> Actor:
    """A person who signed in to the console with Slack: found by their Slack user id, so a
    console approval carries the same person as a button click in Slack."""
    person = policy.person_for("slack", user_id)
    if person is None:
        raise _unknown(policy, user_id, door="slack")
    _not_a_service(policy, person, "the console")
    return Actor(person, "console", user_id, f"console {how}")


def is_token_admin(policy: Policy, actor: Actor) -> bool:
    admins = set(policy.authentication.token_admin_roles)
    person = policy.people.get(actor.person)
    return bool(person and admins & set(person.roles))


def may_manage_tokens(policy: Policy, actor: Actor, person: str) -> None:
    """Everyone manages their own tokens; others' (and service identities') only members of
    authentication.token_admin_roles."""
    if person not in policy.people:
        raise _unknown(policy, person)
    if person == actor.person and not policy.people[person].service:
        return
    if is_token_admin(policy, actor):
        return
    admins = set(policy.authentication.token_admin_roles)
    raise PolicyDenied(
        f"{actor.person} may not manage API tokens of {person}",
        rule_ids=["authentication.token_admin_roles"],
        hint="a person manages their own tokens; for others, a member of "
        f"{', '.join(sorted(admins)) or '(no role is set in authentication.token_admin_roles)'}",
    )


def _not_a_service(policy: Policy, person: str, door: str) -> None:
    if policy.people[person].service:
        raise Unauthenticated(
            f"{person} is a service identity: it authenticates only with an API token, "
            f"not at {door}",
            hint=f"create one with `acp token create --for {person}` (a token admin)",
        )


def _unknown(policy: Policy, identity: str, door: str = "cli") -> UnknownPerson:
    known = ", ".join(sorted(policy.people)) or "nobody"
    return UnknownPerson(
        f"{door} identity '{identity}' is not a person in the policy",
        hint=f"people in the policy: {known} (add the identity under "
        f"people.<name>.identities.{door})",
    )
