import { runEntry, runMain } from './index.js'

runEntry(() => runMain(true), true)
