// Package aws holds the AWS SAM template that deploys the function app to
// AWS Lambda, and the tests that keep it in agreement with function.json,
// topology.json and the Lambda package that make package-lambda builds.
package aws
