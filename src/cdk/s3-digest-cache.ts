import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DigestCache } from '../compress/cache';

/**
 * The compressed-digest cache of one asset, kept in an S3 object beside the asset as well as
 * in the container's /tmp. A retry in a fresh Lambda container (a timeout, a redeploy after a
 * failure) then knows the digest each uncompressed layer compressed to, asks ECR for it, and
 * skips compressing and uploading what is already there; /tmp alone only helps a warm
 * container. The object is rewritten whole (a few lines, one per layer) after each layer,
 * one write at a time so a slower, older write never lands last.
 */
export class S3DigestCache extends DigestCache {
  private writes: Promise<void> = Promise.resolve();
  /** Entries read from S3 at load, for the log. */
  loadedFromS3 = 0;

  constructor(
    file: string | undefined,
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly objectKey: string,
    private readonly log: (line: string) => void,
  ) {
    super(file);
  }

  override async load(): Promise<void> {
    await super.load();
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey }));
      const text = (await out.Body?.transformToString('utf8')) ?? '';
      this.loadedFromS3 = this.ingest(text);
      this.log(
        `digest cache: ${this.loadedFromS3} compressed layer(s) known from s3://${this.bucket}/${this.objectKey}`,
      );
    } catch (e) {
      const name = (e as { name?: string }).name;
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      // Without s3:ListBucket, S3 answers a missing object with 403 rather than 404.
      if (name === 'NoSuchKey' || status === 404 || status === 403)
        this.log(`digest cache: none yet at s3://${this.bucket}/${this.objectKey}`);
      else this.log(`digest cache: not read (${name ?? String(e)}): layers are compressed again`);
    }
  }

  protected override async persist(line: string): Promise<void> {
    await super.persist(line);
    const write = this.writes.then(async () => {
      try {
        await this.s3.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.objectKey,
            Body: this.serialize(),
            ContentType: 'application/x-ndjson',
          }),
        );
      } catch (e) {
        this.log(
          `digest cache: not saved to s3://${this.bucket}/${this.objectKey} (${(e as { name?: string }).name ?? String(e)}): a retry compresses again`,
        );
      }
    });
    this.writes = write;
    await write;
  }
}
