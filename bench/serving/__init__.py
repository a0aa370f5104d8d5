"""The serving benchmark (`make bench`, `bench-split`, `soak`): the monolith against the microservices."""
