import { runEntry, runMain } from './index.js'

runEntry(() => runMain(false), true)
