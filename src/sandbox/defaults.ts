/** The pids limit every step and container gets unless the operator sets another: a fork bomb is held without any flag. */
export const DEFAULT_PIDS_LIMIT = 1024;
