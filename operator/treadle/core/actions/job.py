"""`job`: run the task in a pod of its own, a batch/v1 Job per attempt (treadle.core.jobs
builds it, treadle.controllers.jobtasks makes it and reports its end).  Its templated fields
are the image, command, args, env values and working directory; the rest is copied."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from treadle.api.workflows import JobAction
from treadle.core import podspecs, templating
from treadle.core.actions._base import ActionKind

TEMPLATED_LISTS = ("command", "args")


class Job(ActionKind):
    name = "job"
    runner = "treadle.worker.runners:run_job"
    own_pod = True

    def templates(self, spec: JobAction, path: str) -> Iterator[tuple[str, str]]:
        yield f"{path}.image", spec.image
        for field in TEMPLATED_LISTS:
            for number, text in enumerate(getattr(spec, field) or []):
                yield f"{path}.{field}[{number}]", text
        if spec.working_dir is not None:
            yield f"{path}.workingDir", spec.working_dir
        for number, variable in enumerate(spec.env or []):
            value = variable.get("value")
            if isinstance(value, str):
                yield f"{path}.env[{number}].value", value

    def problems(self, spec: JobAction, path: str) -> list[str]:
        return podspecs.job_problems(
            spec.model_dump(mode="json", exclude_none=True, by_alias=True), path
        )

    def secrets_named(self, raw: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
        for name in sorted(podspecs.secrets_in_env(raw.get("env"))):
            yield name, f"{path}.env"
        for index, volume in enumerate(raw.get("volumes") or []):
            secret = podspecs.get_text(volume, "secret", "secretName")
            if secret:
                yield secret, f"{path}.volumes[{index}].secret"

    def render(self, spec: JobAction, context: Mapping[str, Any]) -> dict[str, Any]:
        def text(source: str) -> str:
            return templating.render_text(source, context)

        rendered = spec.model_dump(mode="json", exclude_none=True, by_alias=True)
        rendered["image"] = text(spec.image)
        for field in TEMPLATED_LISTS:
            if field in rendered:
                rendered[field] = [text(item) for item in rendered[field]]
        if spec.working_dir is not None:
            rendered["workingDir"] = text(spec.working_dir)
        if spec.env:
            rendered["env"] = [
                {**v, "value": text(v["value"])} if isinstance(v.get("value"), str) else v
                for v in spec.env
            ]
        return rendered


KIND = Job()
