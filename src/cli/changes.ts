import { SlipwayError } from '../errors.js';
import { emptyContainerConfig, type ContainerConfigJson } from '../image-config.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { applyMetadata, isMetadataStep, workdirOf, type StageState } from '../dockerfile/metadata.js';

const ALLOWED = new Set(['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'ONBUILD', 'USER', 'VOLUME', 'WORKDIR', 'STOPSIGNAL']);

/** `import --change 'CMD ["sh"]'`: Dockerfile instructions applied to an empty config. */
export function configFromChanges(changes: string[]): ContainerConfigJson {
  const state: StageState = {
    config: emptyContainerConfig(), args: new Map(), cmdSet: false, buildArgs: {}, globalArgs: new Map(), file: '--change', escape: '\\',
  };
  for (const c of changes) {
    const steps = parseDockerfile(c, '--change').steps;
    for (const step of steps) {
      if (!ALLOWED.has(step.kind)) throw new SlipwayError('ERR_USAGE', `${step.kind} is not a valid change command`);
      if (step.kind === 'WORKDIR') {
        state.config = { ...state.config, WorkingDir: workdirOf(state.config.WorkingDir, step.path) };
      } else if (isMetadataStep(step)) {
        state.config = applyMetadata(step, state).config;
      }
    }
  }
  return state.config;
}
