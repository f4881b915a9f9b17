"""MeshGuardPlugin: every command the agent runs is checked with a MeshGuard gateway first.

For when you cannot change how AutoGPT is started; otherwise prefer the launcher
(``python meshguard_autogpt.py ...``), which governs the dispatcher itself. The governance is the
launcher's, not a copy: the build bundles ``meshguard_autogpt.py`` into this package, and
pre_command asks its CommandChecker (same action map, canonical paths, waits, refusal text,
fail-closed client).

AutoGPT gives a plugin no veto: pre_command must return a ``(name, arguments)`` pair (None crashes
the loop). So a refused call is rewritten to ``meshguard_refused``, a command this plugin registers
in post_prompt, whose function returns the refusal for the agent to read. v0.4.6 and v0.4.7 ignore
the arguments pre_command returns and keep only the name, so the function returns the refusal this
plugin stored, whatever arguments it is called with (positionally in PyPI 0.2.2, by keyword later).

Settings: the launcher's environment variables (MESHGUARD_URL, MESHGUARD_TOKEN, MESHGUARD_TIMEOUT,
MESHGUARD_ON_RATE_LIMIT, MESHGUARD_APPROVAL_TIMEOUT, MESHGUARD_ACTION_MAP, MESHGUARD_TRACE_ID...),
e.g. in AutoGPT's .env. Under the launcher (its dispatcher patch is installed) the plugin stays
passive, so no command is checked twice.
"""

from __future__ import annotations

import atexit
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, TypeVar

from auto_gpt_plugin_template import AutoGPTPluginTemplate

from . import meshguard_autogpt as launcher

PromptGenerator = TypeVar("PromptGenerator")

REFUSAL_COMMAND = "meshguard_refused"  # lower case: v0.4.x matches plugin commands by name.lower()
REFUSAL_LABEL = "MeshGuard refusal notice (used by MeshGuard only; never choose it)"
# Generations whose loop calls pre_command and shows a plugin command's returned string to the agent.
SUPPORTED_GENERATIONS = ("0.2-0.4.0", "0.4.1-0.4.4", "0.4.5-0.4.7")
_NOTHING_REFUSED = "Nothing was refused: meshguard_refused only reports MeshGuard's refusals and does nothing."


def _say(message: str, error: bool = False) -> None:
    print(f"MeshGuard: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def _stop(message: str, status: int) -> None:
    """End AutoGPT now: a SystemExit, which AutoGPT's `except Exception` blocks cannot swallow."""
    _say(message, error=True)
    raise SystemExit(status)


def _fault(command_name: Any, exc: Optional[BaseException]) -> Dict[str, Any]:
    """A refusal for a call the plugin could not check (the shape refusal_text reads)."""
    why = f"{type(exc).__name__}: {exc}" if exc is not None else "no decision"
    return {"allowed": False, "decision": "error", "action": f"execute:{str(command_name).lower()}", "resource": None,
            "reason": f"the MeshGuard plugin could not check this command ({why}); refused (fail closed)"}  # fmt: skip


@dataclass
class _Allowed:
    """An allowed call between pre_command and post_command: what to record, linked to its decision."""

    command: str
    mapped: launcher.MappedCommand
    decision_id: Optional[str]
    started: float


class MeshGuardPlugin(AutoGPTPluginTemplate):
    """Checks every command with a MeshGuard gateway (pre_command) and records its outcome (post_command)."""

    def __init__(self) -> None:
        super().__init__()
        self._name = "MeshGuard"
        self._version = launcher.__version__
        self._description = "Checks every command with a MeshGuard gateway before it runs, and records its outcome."
        self._gateway: Optional[launcher.MeshGuardGateway] = None
        self._checker: Optional[launcher.CommandChecker] = None
        self._prompt: Any = None
        self._allowed: Optional[_Allowed] = None
        self._refusal: Optional[str] = None  # what meshguard_refused returns for the call being refused
        self._refused: Optional[str] = None  # the name of that call
        self._passive_said = False
        if self._passive():
            return
        self._gateway = self._connect()

    # -- set-up --------------------------------------------------------------------------------

    def _connect(self) -> launcher.MeshGuardGateway:
        """The gateway client, from the launcher's environment variables; stops AutoGPT when it cannot govern."""
        # taken out of os.environ (AutoGPT's .env put it there): nothing the agent starts inherits it
        token = launcher._take_agent_token() or launcher._taken_agent_token
        if not token:
            _stop("the MeshGuard plugin has no agent token, so AutoGPT was stopped before its first command. "
                  "Set MESHGUARD_TOKEN (and MESHGUARD_URL) in AutoGPT's .env (`meshguard agent token NAME` "
                  "issues one), or take MeshGuardPlugin out of ALLOWLISTED_PLUGINS / plugins_config.yaml",
                  launcher.EXIT_ERROR)  # fmt: skip
        try:
            gateway = launcher.MeshGuardGateway(token=token)
            self._action_map = launcher.load_action_map()
        except launcher.ConfigError as exc:
            _stop(f"the MeshGuard plugin cannot start: {exc}; AutoGPT was stopped", launcher.EXIT_ERROR)
        problem = gateway.token_problem()  # None too when the gateway is down: each command is refused then
        if problem is not None:
            _stop(f"the MeshGuard gateway {gateway.url} rejects this agent's token ({problem}); AutoGPT was stopped. "
                  "Set MESHGUARD_TOKEN to a valid token (meshguard agent token NAME; a revoked agent needs a new "
                  "agent: meshguard agent create NAME --tags autogpt)", launcher.EXIT_REVOKED)  # fmt: skip
        _say(f"plugin governing AutoGPT's commands through {gateway.url}; trace {gateway.trace_id}")
        atexit.register(self._farewell, gateway)
        return gateway

    @staticmethod
    def _farewell(gateway: launcher.MeshGuardGateway) -> None:
        s = gateway.stats
        _say(f"trace {gateway.trace_id}: {s['allowed']} allowed, {s['refused']} refused. "
             f"See every decision: meshguard audit trace {gateway.trace_id}")  # fmt: skip

    def _passive(self) -> bool:
        """The launcher's dispatcher patch governs this AutoGPT: checking here too would check twice."""
        patched = launcher.governed_dispatcher()
        if patched is None:
            return False
        if not self._passive_said:
            self._passive_said = True
            _say(f"the launcher already governs {patched}; the MeshGuard plugin stays passive (no command is checked twice)")
        return True

    def _checker_for_this_autogpt(self) -> launcher.CommandChecker:
        if self._checker is None:
            assert self._gateway is not None  # pre_command connects first
            try:
                checker = launcher.CommandChecker(self._gateway, self._action_map)
            except launcher.PatchError as exc:
                _stop(f"the MeshGuard plugin cannot govern this AutoGPT ({exc}); AutoGPT was stopped. "
                      "Run it with the launcher instead: python meshguard_autogpt.py [AutoGPT's arguments]",
                      launcher.EXIT_ERROR)  # fmt: skip
                raise  # unreachable: _stop raises
            if checker.generation not in SUPPORTED_GENERATIONS:
                _stop(f"the MeshGuard plugin governs plugin-era AutoGPT (PyPI agpt 0.2.2 to v0.4.7), not "
                      f"{launcher.GENERATIONS.get(checker.generation, checker.generation)}; AutoGPT was stopped. "
                      "Run it with the launcher instead: python meshguard_autogpt.py [AutoGPT's arguments]",
                      launcher.EXIT_ERROR)  # fmt: skip
            self._checker = checker
        return self._checker

    def _dispatcher_arguments(self, caller: Optional[types.FrameType]) -> Dict[str, Any]:
        """What the dispatcher will be given, taken from the agent whose loop called pre_command
        (Agent.start_interaction_loop up to v0.4.4, Agent.execute from v0.4.5): its command registry
        tells built-in commands from plugin commands, and its workspace judges file paths."""
        agent = caller.f_locals.get("self") if caller is not None else None
        found: Dict[str, Any] = {}
        if agent is not None and hasattr(agent, "command_registry"):
            found["agent"] = agent
            found["command_registry"] = agent.command_registry
        if self._prompt is not None:  # the prompt generator the dispatcher looks plugin commands up in
            found["prompt"] = self._prompt
        return found

    # -- the refusal command -----------------------------------------------------------------------

    def _report_refusal(self, *args: Any, **kwargs: Any) -> str:
        """The function of `meshguard_refused`: the refusal stored by pre_command, whatever arguments
        AutoGPT passes (positional in PyPI 0.2.2, keywords later, the original call's in v0.4.6/v0.4.7)."""
        text, self._refusal = self._refusal, None
        return text or _NOTHING_REFUSED

    def _refuse(self, command_name: str, decision: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        self._refusal = launcher.refusal_text(command_name, decision)
        self._refused = command_name
        return REFUSAL_COMMAND, {"reason": self._refusal}

    # -- the template's hooks: the ones MeshGuard uses -------------------------------------------

    def can_handle_post_prompt(self) -> bool:
        return True

    def post_prompt(self, prompt: PromptGenerator) -> PromptGenerator:
        """Register `meshguard_refused`, the command a refused call is rewritten to."""
        self._prompt = prompt
        prompt.add_command(REFUSAL_LABEL, REFUSAL_COMMAND, {"reason": "<reason>"}, self._report_refusal)  # type: ignore[attr-defined]
        return prompt

    def can_handle_pre_command(self) -> bool:
        return True

    def pre_command(self, command_name: str, arguments: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """Check the call; allowed: unchanged; refused: rewritten to `meshguard_refused`.

        Waits for approvals and (by default) rate limits like the launcher; a revoked token (401)
        stops AutoGPT with the launcher's exit status 3. Any fault refuses (fail closed).
        """
        self._allowed = None
        self._refusal = self._refused = None
        if self._passive():
            return command_name, arguments
        if command_name == REFUSAL_COMMAND:
            return command_name, arguments  # the model chose it: it runs nothing
        if self._gateway is None:  # passive when loaded, but the launcher's patch is gone now
            self._gateway = self._connect()
        try:
            checker = self._checker_for_this_autogpt()
            mapped, decision = checker.check(command_name, arguments, self._dispatcher_arguments(sys._getframe(1)))
        except launcher.AgentRevokedError as exc:
            _say(f"STOPPED: {exc}", error=True)
            raise
        except Exception as exc:  # a fault here must refuse the command, never let it through
            return self._refuse(str(command_name), _fault(command_name, exc))
        if decision is None and mapped is not None:
            # Lifecycle (task_complete, do_nothing...): recorded, never refused. Recorded now, because
            # task_complete ends the run before any plugin hook runs after it.
            self._gateway.record(mapped.action, mapped.resource, "started", "lifecycle command; recorded as it starts")
            return command_name, arguments
        if mapped is None or decision is None or not decision.get("allowed"):
            return self._refuse(str(command_name), decision or _fault(command_name, None))
        self._allowed = _Allowed(command_name, mapped, decision.get("decision_id"), time.monotonic())
        return command_name, arguments

    def can_handle_post_command(self) -> bool:
        return True

    def post_command(self, command_name: str, response: str) -> str:
        """Record the outcome of an allowed command, linked to its decision; the response is unchanged,
        except that a refusal names the command the agent chose, not `meshguard_refused`."""
        allowed, self._allowed = self._allowed, None
        refused, self._refused = self._refused, None
        if refused is not None and command_name == REFUSAL_COMMAND and isinstance(response, str):
            ours = f"Command {REFUSAL_COMMAND} returned: "  # how every plugin-era loop wraps a result
            return f"Command {refused} returned: {response[len(ours):]}" if response.startswith(ours) else response
        if allowed is None or self._gateway is None:
            return response
        result = str(response)
        prefix = f"Command {command_name} returned: "  # how every plugin-era loop wraps a result
        if result.startswith(prefix):
            result = result[len(prefix):]
        status = "error" if result.startswith("Error:") else "success"
        self._gateway.record(allowed.mapped.action, allowed.mapped.resource, status, result,
                             duration_ms=(time.monotonic() - allowed.started) * 1000,
                             decision_id=allowed.decision_id)  # fmt: skip
        return response

    # -- the template's other hooks: not used (each can_handle_* answers False) -------------------

    def can_handle_on_response(self) -> bool:
        return False

    def on_response(self, response: str, *args: Any, **kwargs: Any) -> str:
        return response

    def can_handle_on_planning(self) -> bool:
        return False

    def on_planning(self, prompt: PromptGenerator, messages: List[Any]) -> Optional[str]:
        return None

    def can_handle_post_planning(self) -> bool:
        return False

    def post_planning(self, response: Any, *args: Any) -> Any:
        return args[-1] if args else response  # PyPI 0.2.2 calls post_planning(agent, reply)

    def can_handle_pre_instruction(self) -> bool:
        return False

    def pre_instruction(self, messages: List[Any]) -> List[Any]:
        return messages

    def can_handle_on_instruction(self) -> bool:
        return False

    def on_instruction(self, messages: List[Any]) -> Optional[str]:
        return None

    def can_handle_post_instruction(self) -> bool:
        return False

    def post_instruction(self, response: str) -> str:
        return response

    def can_handle_chat_completion(self, messages: Any, model: str, temperature: float, max_tokens: int) -> bool:
        return False

    def handle_chat_completion(self, messages: List[Any], model: str, temperature: float, max_tokens: int) -> str:
        raise NotImplementedError("MeshGuard answers no chat completions (can_handle_chat_completion is False)")

    # Added by the template AutoGPT v0.4.x installs (Auto-GPT-Plugin-Template git tag 0.1.0).

    def can_handle_text_embedding(self, text: str) -> bool:
        return False

    def handle_text_embedding(self, text: str) -> list:
        raise NotImplementedError("MeshGuard computes no embeddings (can_handle_text_embedding is False)")

    def can_handle_user_input(self, user_input: str) -> bool:
        return False

    def user_input(self, user_input: str) -> str:
        raise NotImplementedError("MeshGuard asks the user nothing (can_handle_user_input is False)")

    def can_handle_report(self) -> bool:
        return False

    def report(self, message: str) -> None:
        return None
