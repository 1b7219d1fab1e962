// The AWS SDK as the s3:// store uses it, in a bundle of its own (dist/s3-sdk.cjs):
// s3.ts imports this module on first use, so no other backend loads the SDK.
export { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
export { Upload } from '@aws-sdk/lib-storage'
