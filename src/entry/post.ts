import { runPost } from '../action/post.js'
import { runEntry } from './run.js'

runEntry(() => runPost(), false)
