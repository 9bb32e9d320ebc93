#>@{Px = t
<# †lock >
$‰ment
<# plock"i #>
${menx = -1