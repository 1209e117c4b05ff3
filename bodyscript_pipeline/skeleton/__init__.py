"""The body the pipeline measures: MediaPipe's 33 landmarks (names, sides, bones) and the joints whose angles it
reports. The vocabulary every other package shares, so it imports none of them."""
