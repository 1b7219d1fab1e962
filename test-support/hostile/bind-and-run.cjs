// Inside a private mount namespace (see isolated.ts): bind-mounts argv[2] over
// argv[3], then runs the bundled entry point argv[4] in this process. Plain
// node rather than sh -c: a shell drops environment variables whose names are
// not shell identifiers, such as the runner's STATE_mount-cache-state.
const { execFileSync } = require('node:child_process')

const [privateDir, sharedPath, entry] = process.argv.slice(2)
execFileSync('mount', ['--bind', privateDir, sharedPath], { stdio: 'inherit' })
process.argv.splice(2)
require(entry)
