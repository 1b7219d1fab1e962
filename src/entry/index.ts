// Everything the entry points run, in one bundle (dist/index.cjs) that the
// thin per-entry files (dist/main.cjs, …) require: see scripts/bundle.mjs.
export { runMain } from '../action/main.js'
export { runPost, runSaveOnly } from '../action/post.js'
export { main as cliMain } from '../cli/main.js'
export { runEntry } from './run.js'
