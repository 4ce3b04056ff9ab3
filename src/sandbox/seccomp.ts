/**
 * The default seccomp profile of a step, with the semantics of Docker's default profile: an
 * allowlist, and every other system call fails with EPERM. Written here as data from the
 * documented lists (Docker's "Seccomp security profiles" page names what the default profile
 * blocks and why; the kernel's syscall tables name the rest):
 *
 * - Blocked because they reach beyond the step (need capabilities a step never has): kernel
 *   modules and kexec (`init_module`, `finit_module`, `delete_module`, `kexec_load`,
 *   `kexec_file_load`), mounts and namespaces (`mount`, `umount2`, `pivot_root`, the new mount
 *   API, `unshare`, `setns`, `clone` with namespace flags), clocks (`settimeofday`,
 *   `clock_settime`, `clock_adjtime`), swap, quotas, `reboot`, `acct`, the kernel keyring
 *   (`add_key`, `request_key`, `keyctl`), `bpf`, `perf_event_open`, `userfaultfd`,
 *   `fanotify_init`, handle-based opens (`open_by_handle_at`, `name_to_handle_at`), NUMA policy
 *   (`mbind`, `set_mempolicy`, `get_mempolicy`, `move_pages`, `migrate_pages`), raw I/O ports
 *   (`iopl`, `ioperm`), `kcmp`, `pidfd_getfd`, `syslog`, `vhangup`, `lookup_dcookie`, `uselib`,
 *   `ustat`, `sysfs`, `_sysctl`, `nfsservctl`, and `io_uring` (as Docker since 25.0).
 * - Restricted by argument: `personality` (only the harmless personas), `socket` (not
 *   AF_VSOCK), `clone` (no namespace flags).
 * - `clone3` fails with ENOSYS instead of EPERM: its flags live in memory that seccomp cannot
 *   inspect, so C libraries must fall back to `clone`, whose flags it can.
 */

/** One OCI seccomp rule (runtime-spec `linux.seccomp.syscalls[]`). */
export interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  errnoRet?: number;
  args?: Array<{ index: number; value: number; valueTwo?: number; op: string }>;
}

/** The OCI `linux.seccomp` object. */
export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;
const AF_VSOCK = 40;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

/** Allowed with any arguments (x86_64 names; 32-bit x86 names follow). */
const ALLOWED: readonly string[] = [
  // files and directories
  'access', 'chdir', 'chmod', 'chown', 'close', 'close_range', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3',
  'faccessat', 'faccessat2', 'fadvise64', 'fallocate', 'fchdir', 'fchmod', 'fchmodat', 'fchown', 'fchownat', 'fcntl',
  'fdatasync', 'flock', 'fstat', 'fstatfs', 'fsync', 'ftruncate', 'futimesat', 'getcwd', 'getdents', 'getdents64',
  'lchown', 'link', 'linkat', 'lseek', 'lstat', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'newfstatat', 'open', 'openat',
  'openat2', 'pread64', 'preadv', 'preadv2', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead', 'readlink',
  'readlinkat', 'readv', 'rename', 'renameat', 'renameat2', 'rmdir', 'sendfile', 'splice', 'stat', 'statfs', 'statx',
  'symlink', 'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'tee', 'truncate', 'umask', 'unlink', 'unlinkat',
  'utime', 'utimensat', 'utimes', 'vmsplice', 'write', 'writev',
  // extended attributes
  'fgetxattr', 'flistxattr', 'fremovexattr', 'fsetxattr', 'getxattr', 'lgetxattr', 'listxattr', 'llistxattr',
  'lremovexattr', 'lsetxattr', 'removexattr', 'setxattr',
  // memory
  'brk', 'madvise', 'membarrier', 'memfd_create', 'mincore', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mprotect',
  'mremap', 'msync', 'munlock', 'munlockall', 'munmap', 'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'process_madvise',
  'process_mrelease', 'remap_file_pages',
  // processes, threads, scheduling
  'arch_prctl', 'capget', 'capset', 'chroot', 'execve', 'execveat', 'exit', 'exit_group', 'fork', 'get_robust_list',
  'get_thread_area', 'getcpu', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrlimit', 'getrusage',
  'getsid', 'gettid', 'ioprio_get', 'ioprio_set', 'kill', 'modify_ldt', 'pidfd_open', 'pidfd_send_signal', 'prctl',
  'prlimit64', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'rseq', 'sched_get_priority_max',
  'sched_get_priority_min', 'sched_getaffinity', 'sched_getattr', 'sched_getparam', 'sched_getscheduler',
  'sched_rr_get_interval', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler',
  'sched_yield', 'seccomp', 'set_robust_list', 'set_thread_area', 'set_tid_address', 'setpgid', 'setpriority',
  'setrlimit', 'setsid', 'tgkill', 'tkill', 'vfork', 'wait4', 'waitid',
  // identity
  'getegid', 'geteuid', 'getgid', 'getgroups', 'getresgid', 'getresuid', 'getuid', 'setfsgid', 'setfsuid', 'setgid',
  'setgroups', 'setregid', 'setresgid', 'setresuid', 'setreuid', 'setuid',
  // signals
  'pause', 'rt_sigaction', 'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend',
  'rt_sigtimedwait', 'rt_tgsigqueueinfo', 'sigaltstack', 'signalfd', 'signalfd4', 'restart_syscall',
  // time and timers
  'adjtimex', 'alarm', 'clock_getres', 'clock_gettime', 'clock_nanosleep', 'getitimer', 'gettimeofday', 'nanosleep',
  'setitimer', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_settime',
  'timerfd_create', 'timerfd_gettime', 'timerfd_settime', 'times',
  // waiting and events
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait', 'eventfd', 'eventfd2',
  'futex', 'futex_waitv', 'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel',
  'io_destroy', 'io_getevents', 'io_pgetevents', 'io_setup', 'io_submit', 'ioctl', 'pipe', 'pipe2', 'poll', 'ppoll',
  'pselect6', 'select',
  // IPC
  'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive', 'mq_timedsend', 'mq_unlink', 'msgctl', 'msgget',
  'msgrcv', 'msgsnd', 'semctl', 'semget', 'semop', 'semtimedop', 'shmat', 'shmctl', 'shmdt', 'shmget',
  // sockets (socket itself is restricted below)
  'accept', 'accept4', 'bind', 'connect', 'getpeername', 'getsockname', 'getsockopt', 'listen', 'recvfrom',
  'recvmmsg', 'recvmsg', 'sendmmsg', 'sendmsg', 'sendto', 'setsockopt', 'shutdown', 'socketpair',
  // the step's own UTS namespace and sandboxing of its own
  'getrandom', 'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'sethostname',
  'setdomainname', 'sysinfo', 'uname',
  // 32-bit x86 names of the calls above (libseccomp resolves them per architecture)
  '_llseek', '_newselect', 'chown32', 'fadvise64_64', 'fchown32', 'fcntl64', 'fstat64', 'fstatat64', 'fstatfs64',
  'ftruncate64', 'getegid32', 'geteuid32', 'getgid32', 'getgroups32', 'getresgid32', 'getresuid32', 'getuid32',
  'ipc', 'lchown32', 'lstat64', 'mmap2', 'recv', 'send', 'sendfile64', 'setfsgid32', 'setfsuid32', 'setgid32',
  'setgroups32', 'setregid32', 'setresgid32', 'setresuid32', 'setreuid32', 'setuid32', 'sigaction', 'signal',
  'sigpending', 'sigprocmask', 'sigreturn', 'sigsuspend', 'socketcall', 'stat64', 'statfs64', 'truncate64',
  'ugetrlimit', 'waitpid', 'clock_gettime64', 'clock_nanosleep_time64', 'futex_time64', 'ppoll_time64',
  'pselect6_time64', 'recvmmsg_time64', 'rt_sigtimedwait_time64', 'semtimedop_time64', 'timer_gettime64',
  'timer_settime64', 'timerfd_gettime64', 'timerfd_settime64', 'utimensat_time64', 'clock_getres_time64',
  'io_pgetevents_time64', 'mq_timedreceive_time64', 'mq_timedsend_time64', 'sched_rr_get_interval_time64',
];

/** `personality` values that only select or query a persona, as Docker allows. */
const PERSONAS = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** The profile every step runs under (a fresh object: callers may extend it). */
export function defaultSeccompProfile(): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: [...ALLOWED], action: 'SCMP_ACT_ALLOW' },
      ...PERSONAS.map((value): SeccompRule => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] })),
      { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }] },
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}

/** Every name the profile allows unconditionally (for tests and documentation). */
export const ALLOWED_SYSCALLS = ALLOWED;
