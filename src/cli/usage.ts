import { INPUT_DEFAULTS } from '../action/input-defaults.js'
import { COMMAND_OPTIONS, COMMANDS, inputOptions, type Command, type OwnOption } from './args.js'
import { EXIT_CODE_MEANINGS } from './exit-codes.js'

const NAME = 'buildkit-mount-cache'

/** What each command does, for --help. */
const COMMAND_HELP: Record<Command, string> = {
  restore: `Restores every mount's newest matching entry into the builder and writes the frozen keys to the state file. Run it before \`docker buildx build\`.`,
  save: `Extracts the mounts from the builder and saves those that changed. Uses the keys frozen by restore (the state file) when present, else plans from the options. Run it after the build.`,
  ls: `Lists the stored entries under the key prefix, per mount (key, size, age, last use). The mount options (or ./Dockerfile) name the mounts to group by.`,
  prune: `Removes entries unused for longer than --max-age and then the least recently used until the rest fits --max-total. Local directory and S3 backends.`
}

/** Action inputs offered as options, by option name; any other is "as the action input of the same name". */
const DESCRIBED: Record<string, string> = {
  mounts: 'cache mount, one per option (id=…,target=…,uid=…,gid=…,mode=…,sharing=…,key-files=…,exclude=…,max-size=…)',
  dockerfile: 'more Dockerfiles whose RUN --mount=type=cache mounts are persisted (repeatable)',
  context: 'the build context directory (default .); without --file, --dockerfile and --mounts: {context}/Dockerfile',
  file: 'the build\u2019s Dockerfile (default {context}/Dockerfile when no --mounts)',
  target: 'the build\u2019s target stage: mounts of stages it does not need are left out',
  'build-arg': 'KEY=VALUE of the build, or KEY to take it from the environment, for variables in mount options (repeatable)',
  platforms: 'target platforms of the build, for TARGETARCH & co. in mount ids (repeatable or comma list)',
  'key-files': 'glob patterns of files hashed into the keys, e.g. a lock file (repeatable or comma list)',
  'key-prefix': 'first part of every key',
  builder: 'buildx builder name (default: the current builder)',
  'utility-image': 'image of the generated inject/extract builds',
  client: 'auto | buildx | docker (DOCKER_BUILDKIT=1 docker build)',
  'key-platform': 'platform part of the keys (default: --platforms, else this machine\u2019s)',
  platform: 'deprecated alias of --key-platform',
  'max-size': 'size above which a mount is not saved, e.g. 2G',
  'max-restore-size': 'largest size a restored archive may expand to',
  'extract-via': 'auto | loopback | export (never the host network)',
  'delete-superseded': 'true: after a new full save, delete the entries it replaces (the old base and its deltas)'
}

const OWN_HELP: Record<OwnOption, string[]> = {
  backend: [
    '--backend SPEC',
    'github | dir:/path | s3://bucket/prefix[?endpoint=URL&region=R&part-size=16M]',
    '(default: dir:~/.cache/buildkit-mount-cache, $XDG_CACHE_HOME when set;',
    'github inside GitHub Actions; S3 credentials and AWS_ENDPOINT_URL from the',
    'standard AWS environment)'
  ],
  state: [
    '--state FILE',
    'the state file restore writes and save reads (default: outside the build',
    'context, in $RUNNER_TEMP when set, else $XDG_STATE_HOME/buildkit-mount-cache',
    '(~/.local/state/buildkit-mount-cache), named from the key prefix and the',
    'working directory; restore prints where)'
  ],
  json: ['--json', 'print the result as one JSON document on stdout (log lines go to stderr)'],
  verbose: ['-v, --verbose', 'debug lines (generated Dockerfiles, build output)'],
  'max-age': ['--max-age AGE', 'remove entries unused for longer than AGE (7d, 12h, 30m)'],
  'max-total': ['--max-total SIZE', 'then remove the least recently used until the rest fits SIZE (5G)'],
  'dry-run': ['--dry-run', 'only show what would be removed']
}

/** What `ls --json` prints: documented here and in the README, checked by the CLI's tests. */
const LS_JSON = [
  '{"command": "ls", "backend": LOCATION, "total-bytes": N, "warnings": [TEXT],',
  ' "entries": [{"mount": ID or null, "key": KEY, "size": BYTES, "created": ISO-8601,',
  '              "last-used": ISO-8601, "compression": zstd|gzip|none or null}]}'
]

const WIDTH = 30

function option(lines: readonly string[]): string[] {
  const [flag = '', first = '', ...rest] = lines
  return [`  ${flag}`.padEnd(WIDTH) + first, ...rest.map(l => ' '.repeat(WIDTH) + l)]
}

function exitCodes(): string[] {
  return ['Exit codes:', ...EXIT_CODE_MEANINGS.map(({ code, meaning }) => `  ${code}  ${meaning}`)]
}

/** --help: the commands (no command), or one command with exactly the options it takes. */
export function helpText(command?: Command): string {
  return `${(command === undefined ? overview() : commandHelp(command)).join('\n')}\n`
}

function overview(): string[] {
  return [
    `Usage: ${NAME} <command> [options]`,
    '',
    'Keeps BuildKit cache mounts (RUN --mount=type=cache) between builds, outside GitHub Actions too.',
    '',
    'Commands:',
    ...COMMANDS.map(c => `  ${c.padEnd(8)} ${COMMAND_HELP[c]}`),
    '',
    `Run \`${NAME} <command> --help\` for the options of a command.`,
    '',
    'Options:',
    ...option(['-h, --help', 'this help, or with a command, that command\u2019s']),
    ...option(['--version', 'print the version']),
    '',
    ...exitCodes(),
    ''
  ]
}

function commandHelp(command: Command): string[] {
  const { inputs, options } = COMMAND_OPTIONS[command]
  const inputLines = [...inputOptions()]
    .filter(([, { input }]) => inputs === 'all' || inputs.includes(input))
    .flatMap(([name, { input }]) => {
      const fallback = INPUT_DEFAULTS[input]
      return option([`--${name} VALUE`, `${DESCRIBED[name] ?? 'as the action input of the same name'}${fallback ? ` (default ${fallback})` : ''}`])
    })
  return [
    `Usage: ${NAME} ${command} [options]`,
    '',
    COMMAND_HELP[command],
    '',
    'Options (the action inputs):',
    ...inputLines,
    '',
    'Options:',
    ...options.flatMap(o => option(OWN_HELP[o])),
    ...option(['-h, --help', 'this help']),
    ...(command === 'ls' ? ['', 'ls --json prints:', ...LS_JSON.map(l => `  ${l}`)] : []),
    '',
    ...exitCodes(),
    ''
  ]
}
