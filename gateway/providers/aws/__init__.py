"""AWS front doors: Bedrock (Converse, ConverseStream) and SageMaker real-time endpoints, SigV4-signed."""
