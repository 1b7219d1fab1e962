import { runMain } from '../restore.js'
import { runEntry } from './run.js'

runEntry(() => runMain(undefined, true), true)
