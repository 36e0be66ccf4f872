// The AWS provider's public surface: everything else in this folder is internal.

export { maxPods } from './limits.ts';
export {
  type AwsProviderOptions,
  createAwsProvider,
  DEFAULT_EC2_BUCKETS,
  type Ec2Bucket,
} from './provider.ts';
