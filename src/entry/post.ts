import { runPost } from '../save.js'
import { runEntry } from './run.js'

runEntry(() => runPost(), false)
