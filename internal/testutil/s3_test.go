package testutil

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The gateway stores and returns objects, and keeps them across a restart.
func TestS3ServerRoundTrip(t *testing.T) {
	s := StartS3(t)
	bucket := s.NewBucket()
	ctx := context.Background()
	body := []byte("hello from berth")
	if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := s.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		t.Fatal("HEAD bucket succeeded while the gateway was stopped")
	}
	s.Start()
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("got %q, %v; want %q", got, err, body)
	}
}
