/**
 * The typed model of a Dockerfile: one variant per instruction, plain data. Every variant
 * carries its 1-based `line`/`endLine` and `text`, the instruction as written (continuations
 * joined the way Docker joins them), which is what `Step N/M : ...` prints.
 * Values are raw (not yet expanded): the planner expands them with the env in scope.
 */
export interface StepBase {
  line: number;
  endLine: number;
  text: string;
}

/** A command in shell form (`RUN echo hi`) or exec form (`RUN ["echo", "hi"]`). */
export type CommandForm = { form: 'shell'; shell: string } | { form: 'exec'; exec: string[] };

/** `<<EOF` bodies following an instruction (BuildKit syntax). */
export interface Heredoc {
  name: string;
  /** True when the delimiter was quoted: no expansion inside. */
  quoted: boolean;
  chomp: boolean;
  content: string;
}

/** `FROM [--platform=P] image [AS name]` */
export interface FromStep extends StepBase { kind: 'FROM'; image: string; stageName: string | undefined; platform: string | undefined }
/** `RUN [--mount=...] [--network=...] [--security=...] cmd` or exec form; `mounts` are the raw `--mount` values */
export type RunStep = StepBase & {
  kind: 'RUN'; mounts: string[]; network: string | undefined; security: 'sandbox' | 'insecure'; heredocs: Heredoc[];
} & CommandForm;
/** `CMD cmd` or exec form */
export type CmdStep = StepBase & { kind: 'CMD' } & CommandForm;
/** `ENTRYPOINT cmd` or exec form */
export type EntrypointStep = StepBase & { kind: 'ENTRYPOINT' } & CommandForm;
/** `LABEL k=v ...` */
export interface LabelStep extends StepBase { kind: 'LABEL'; pairs: Array<[string, string]> }
/** `MAINTAINER name` */
export interface MaintainerStep extends StepBase { kind: 'MAINTAINER'; name: string }
/** `EXPOSE 80 53/udp` */
export interface ExposeStep extends StepBase { kind: 'EXPOSE'; ports: string[] }
/** `ENV k=v ...` or legacy `ENV k v` */
export interface EnvStep extends StepBase { kind: 'ENV'; pairs: Array<[string, string]> }
/**
 * `COPY [--from=s] [--chown=u:g] [--chmod=m] [--link] [--parents] [--exclude=p]... src... dest`
 * and `ADD [--checksum=sha256:...] [--keep-git-dir] [--chown] [--chmod] [--link] [--exclude=p]... src... dest`
 * (also JSON form).
 */
export interface CopyStep extends StepBase {
  kind: 'COPY' | 'ADD';
  sources: string[];
  dest: string;
  from: string | undefined;
  chown: string | undefined;
  chmod: string | undefined;
  link: boolean;
  heredocs: Heredoc[];
  /** ADD --checksum: the digest the (single, HTTP) source must have. */
  checksum?: string | undefined;
  /** ADD --keep-git-dir (refused: git sources cannot be fetched here). */
  keepGitDir?: boolean;
  /** COPY --parents: keep each source's path below the context (up to a `/./` pivot). */
  parents?: boolean;
  /** --exclude patterns (`.dockerignore` syntax), relative to each source. */
  exclude?: string[];
}
/** `VOLUME ["/a"]` or `VOLUME /a /b` */
export interface VolumeStep extends StepBase { kind: 'VOLUME'; paths: string[] }
/** `USER name[:group]` */
export interface UserStep extends StepBase { kind: 'USER'; user: string }
/** `WORKDIR path` */
export interface WorkdirStep extends StepBase { kind: 'WORKDIR'; path: string }
/** `ARG name[=default] ...` */
export interface ArgStep extends StepBase { kind: 'ARG'; args: Array<{ name: string; value: string | undefined }> }
/** `ONBUILD INSTRUCTION ...` */
export interface OnbuildStep extends StepBase { kind: 'ONBUILD'; trigger: string }
/** `STOPSIGNAL signal` */
export interface StopsignalStep extends StepBase { kind: 'STOPSIGNAL'; signal: string }
/** `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=..] CMD cmd` */
export interface HealthcheckStep extends StepBase {
  kind: 'HEALTHCHECK';
  test: string[];
  interval: number | undefined;
  timeout: number | undefined;
  startPeriod: number | undefined;
  startInterval: number | undefined;
  retries: number | undefined;
}
/** `SHELL ["executable", "param"]` */
export interface ShellStep extends StepBase { kind: 'SHELL'; shell: string[] }

export type Step =
  | FromStep | RunStep | CmdStep | EntrypointStep | LabelStep | MaintainerStep | ExposeStep | EnvStep
  | CopyStep | VolumeStep | UserStep | WorkdirStep | ArgStep | OnbuildStep | StopsignalStep
  | HealthcheckStep | ShellStep;

export type StepKind = Step['kind'];
/** Steps that change files: they run in the worker pool. */
export type LayerStep = RunStep | CopyStep;

/** A parsed Dockerfile. */
export interface Dockerfile {
  file: string;
  escape: string;
  steps: Step[];
  warnings: string[];
}
