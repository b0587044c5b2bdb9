"""Create the media bucket when it does not exist yet (run by deploy/release.sh).

Reads the same variables as the app: AWS_STORAGE_BUCKET_NAME, AWS_S3_ENDPOINT_URL,
AWS_S3_REGION_NAME, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. The bucket stays private: browsers
read media only through presigned URLs.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError


def ensure_bucket() -> str:
    bucket = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        return "no AWS_STORAGE_BUCKET_NAME: media stay on local disk"
    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_S3_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_S3_REGION_NAME", "us-east-1"),
    )
    try:
        client.head_bucket(Bucket=bucket)
        return f"bucket {bucket} exists"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
    client.create_bucket(Bucket=bucket)
    return f"created bucket {bucket}"


if __name__ == "__main__":
    print(ensure_bucket(), file=sys.stderr)
