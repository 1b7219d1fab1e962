import { runSaveOnly } from '../action/post.js'
import { runEntry } from './run.js'

// Input errors fail this step; cache and engine trouble are warnings inside.
runEntry(() => runSaveOnly(), true)
