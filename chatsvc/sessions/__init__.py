"""What every connection of every door shares: today, the limits connections are held to."""
