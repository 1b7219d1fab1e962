import { runMain } from '../action/main.js'
import { runEntry } from './run.js'

runEntry(() => runMain(true), true)
