import { COMMANDS, DEFAULT_STATE_FILE, inputOptions, type Command } from './args.js'

/** --help text: what each command does, its options, and every action input the CLI accepts. */
const COMMAND_HELP: Record<Command, string> = {
  restore: `Restores every mount's newest matching entry into the builder and writes the frozen keys to the state file. Run it before \`docker buildx build\`.`,
  save: `Extracts the mounts from the builder and saves those that changed. Uses the keys frozen by restore (the state file) when present, else plans from the options. Run it after the build.`,
  ls: `Lists the stored entries under the key prefix, per mount (key, size, age, last use).`,
  prune: `Removes entries unused for longer than --max-age and then the least recently used until the rest fits --max-total. Local directory and S3 backends.`
}

const DESCRIBED: Record<string, string> = {
  mounts: 'cache mount, one per option (id=…,target=…,uid=…,gid=…,mode=…,sharing=…,key-files=…,exclude=…,max-size=…)',
  dockerfile: 'more Dockerfiles whose RUN --mount=type=cache mounts are persisted (repeatable)',
  context: 'the build context directory (default .); without --file, --dockerfile and --mounts: {context}/Dockerfile',
  file: 'the build\u2019s Dockerfile (default {context}/Dockerfile when no --mounts)',
  target: 'the build\u2019s target stage: mounts of stages it does not need are left out',
  'build-arg': 'KEY=VALUE of the build, or KEY to take it from the environment, for variables in mount options (repeatable)',
  platforms: 'target platforms of the build, for TARGETARCH & co. in mount ids (repeatable or comma list)',
  'key-files': 'glob patterns of files hashed into the keys, e.g. a lock file (repeatable or comma list)',
  'key-prefix': 'first part of every key (default buildkit-mount-cache)',
  builder: 'buildx builder name (default: the current builder)',
  'utility-image': 'image of the generated inject/extract builds (default busybox:1.36)',
  client: 'auto | buildx | docker (DOCKER_BUILDKIT=1 docker build)',
  'key-platform': 'platform part of the keys (default: --platforms, else this machine\u2019s)',
  platform: 'deprecated alias of --key-platform',
  'max-size': 'size above which a mount is not saved, e.g. 2G'
}

export function helpText(command?: Command): string {
  const inputs = [...inputOptions().keys()].map(
    option => `  --${option} VALUE`.padEnd(30) + (DESCRIBED[option] ?? 'as the action input of the same name')
  )
  const lines = [
    'Usage: buildkit-mount-cache <command> [options]',
    '',
    'Keeps BuildKit cache mounts (RUN --mount=type=cache) between builds, outside GitHub Actions too.',
    '',
    'Commands:',
    ...COMMANDS.filter(c => command === undefined || c === command).map(c => `  ${c.padEnd(8)} ${COMMAND_HELP[c]}`),
    '',
    'Options (the action inputs):',
    ...inputs,
    '',
    'Storage and output:',
    '  --backend SPEC              github | dir:/path | s3://bucket/prefix[?endpoint=URL&region=R&part-size=16M]',
    '                              (default: dir:~/.cache/buildkit-mount-cache, github inside GitHub Actions;',
    '                              S3 credentials and AWS_ENDPOINT_URL from the standard AWS environment)',
    `  --state FILE                restore/save: the state file (default ${DEFAULT_STATE_FILE})`,
    '  --json                      print the result as JSON on stdout (log lines go to stderr)',
    '  -v, --verbose               debug lines (generated Dockerfiles, build output)',
    '  -h, --help                  this help',
    '',
    'prune:',
    '  --max-age AGE               remove entries unused for longer than AGE (7d, 12h, 30m)',
    '  --max-total SIZE            then remove the least recently used until the rest fits SIZE (5G)',
    '  --dry-run                   only show what would be removed',
    '',
    'Exit codes: 0 success, also when the cache had trouble (warnings on stderr); 1 unexpected failure; 2 usage error.',
    ''
  ]
  return lines.join('\n')
}
